"""One grid cell, run by one function: `run_cell(spec) -> record` (optimize -> dev -> test), opening its models
through a `ModelPool`. Below everything that runs cells: the local grid (`harness.runner.grid`), its child
processes, and the Ray workers (`harness.runner.ray_executor`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import harness.runner.pool  # ModelPool is looked up there on every use, the one place tests replace it
from harness.core.context import Optimizer, Progress
from harness.core.methods import make_optimizer, spec_optimizer
from harness.core.spec import Override, RunSpec
from harness.runner.data import RunData
from harness.runner.records import RunFolder
from harness.runner.run import DEFAULT_RESULTS, run_optimize


class Optimizers:
    """The optimizers of one command (or one worker process): each (method, preset, overrides) is configured once
    and handed to every cell that runs it (an optimizer holds its hyper-parameters only; the data comes in the call)."""

    def __init__(self) -> None:
        self._built: dict[tuple[str, str, tuple[tuple[str, Override], ...]], Optimizer] = {}

    def build(self, method: str, preset: str, overrides: tuple[tuple[str, Override], ...] = ()) -> Optimizer:
        key = (method, preset, tuple(sorted(overrides)))
        if key not in self._built:
            self._built[key] = make_optimizer(method, preset=preset, **dict(overrides))
        return self._built[key]

    def __call__(self, spec: RunSpec) -> Optimizer:
        """The optimizer of an optimize spec (`spec_optimizer`), built on first use."""
        return self.build(spec.method, spec.preset or "cpu", spec.overrides)


def run_cell(
    spec: RunSpec,
    *,
    pool: harness.runner.pool.ModelPool | None = None,
    data: RunData | None = None,
    data_dir: str | Path | None = None,
    optimizer: Optimizer | None = None,
    out: str | Path = DEFAULT_RESULTS,
    progress: Progress | None = None,
    placement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one optimize cell (optimize -> dev -> test) and return its record (summary.json's content).

    A finished cell is read back without opening any model; an unfinished one resumes from its step log.
    Without a `pool` the models are opened for this call and released at the end. `data` (the command's loaded
    rows, else loaded from `data_dir`) and `optimizer` (else built from the spec) are what a caller that runs
    several cells shares between them.
    """
    if spec.kind != "optimize":
        raise ValueError("run_cell takes an optimize spec")
    folder = RunFolder(Path(out), spec)
    if folder.finished:
        return folder.summary()
    optimizer = optimizer or spec_optimizer(spec)
    data = data or RunData(data_dir)
    data.check(spec)  # the rows are the ones the spec was made from, checked before any model loads
    own = pool is None
    pool = pool or harness.runner.pool.ModelPool()
    try:
        task_model = pool.generator(spec.model, backend=spec.backend, dtype=spec.dtype)
        opt_model = None
        if spec.optimizer is not None and optimizer.needs.optimizer_llm:
            e = spec.optimizer
            opt_model = pool.generator(e.model, backend=e.backend or spec.backend, dtype=spec.dtype, base_url=e.base_url)
        gradient = pool.gradient_model(spec.model, dtype=spec.dtype) if optimizer.needs.gradients else None
        return run_optimize(
            spec, task_model, optimizer_model=opt_model, gradient_model=gradient, data=data, out=out,
            progress=progress, optimizer=optimizer,
            placement=placement or {"executor": "local", "host": socket.gethostname(), "pid": os.getpid()},
        )
    finally:
        if own:
            pool.close()
