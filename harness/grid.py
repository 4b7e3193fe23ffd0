"""The benchmark grid: every (method, task, model, seed) cell, run one after another, resumable.

A cell is executed by one function, `run_cell(spec) -> record`, so cells can later be sent to a cluster:
the spec (a frozen `RunSpec`, its hash the run id) is everything a worker needs. In one process, models are
opened through a small `ModelPool`, so each model loads once however many cells use it; cells are ordered
model by model and a model is released when its last cell is done.

Resuming is the run folder's job: a finished cell (summary.json present) is read back, an unfinished one
continues from its last completed step (steps.jsonl, see `harness.run.run_optimize`). Ctrl-C or a crash
therefore loses at most the step in progress.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records import RunFolder
from harness.run import DEFAULT_RESULTS, run_optimize
from harness.types import BenchError, Generator, PromptPosition, RunSpec

# What every method of a grid shares under a preset (fair comparison): the reasoning length and the prompt
# position. cpu: smollm2-135m writes reasoning only when the instruction comes before the question (mean
# reasoning length on navigate train rows: after 1.0 token, before 45.4, assistant 0.0; docs/greater.md).
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {"max_new_tokens": 1024, "position": "after"},
    "cpu": {"max_new_tokens": 128, "position": "before"},
    "smoke": {"max_new_tokens": 32, "position": "after"},
}


@dataclass(frozen=True, kw_only=True)
class GridSettings:
    """What every cell of a grid shares. The spec of a cell equals the one `bench optimize` builds from
    the same options, so both commands find each other's finished run folders."""

    preset: str = "cpu"
    position: PromptPosition | None = None  # None: the preset's (PRESET_DEFAULTS)
    max_new_tokens: int | None = None  # None: the preset's (256 for unknown presets)
    limit: int | None = None  # evaluate the final prompt on the first N test rows only
    reading: str | None = None  # primary answer reading; None: options for closed answer sets
    dtype: str = "float32"
    budget_tokens: int | None = None  # common budget: task-model tokens (in + out)
    optimizer_model: str | None = None  # optimizer LLM of text-based methods; None: the task model
    backend: str = "hf"
    optimizer_backend: str = "hf"  # "openai" reaches a strong optimizer LLM on an OpenAI-compatible server
    base_url: str | None = None  # that server's URL (the API key comes from OPENAI_API_KEY)

    def __post_init__(self) -> None:
        defaults = PRESET_DEFAULTS.get(self.preset, {})
        object.__setattr__(self, "position", PromptPosition(self.position or defaults.get("position", "after")))
        object.__setattr__(self, "max_new_tokens", self.max_new_tokens or defaults.get("max_new_tokens", 256))
        if self.optimizer_backend == "openai" and not (self.base_url and self.optimizer_model):
            raise BenchError("--optimizer-backend openai needs --optimizer-model NAME and --base-url URL")
        if self.max_new_tokens < 1:
            raise BenchError("--max-new-tokens must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise BenchError("--limit must be at least 1")


@dataclass(frozen=True, kw_only=True)
class Cell:
    method: str
    task: str
    model: str
    seed: int

    def spec(self, settings: GridSettings) -> RunSpec:
        s = settings
        budget = {"task_tokens": s.budget_tokens} if s.budget_tokens else None
        return RunSpec(
            kind="optimize", task=self.task, model=self.model, backend=s.backend, method=self.method,
            position=s.position, max_new_tokens=s.max_new_tokens,
            dtype=s.dtype, seed=self.seed, primary_reading=s.reading, limit=s.limit,
            extra={"preset": s.preset, "budget": budget, "optimizer_model": s.optimizer_model or self.model,
                   **OptimizerEndpoint(s.optimizer_backend, s.base_url).extra()},
        )

    def __str__(self) -> str:
        return f"{self.method} / {self.task} / {self.model} / seed {self.seed}"


def make_cells(methods: Sequence[str], tasks: Sequence[str], models: Sequence[str], seeds: Sequence[int]) -> list[Cell]:
    """All cells, model by model (each model loads once), then seed by seed (a complete first seed comes
    first), then task, then method."""
    return [Cell(method=me, task=t, model=mo, seed=s) for mo in models for s in seeds for t in tasks for me in methods]


# ------------------------------------------------------------------------------------------ models


Opener = Callable[[str, str, str], Generator]  # (model, backend, dtype) -> Generator


@dataclass(frozen=True)
class OptimizerEndpoint:
    """Where the optimizer LLM runs, when not on the task model's backend. Recorded in the spec only when
    it differs from the default, so the run ids of plain local runs stay the same."""

    backend: str = "hf"
    base_url: str | None = None

    def extra(self) -> dict[str, Any]:
        return {} if self.backend == "hf" else {"optimizer_backend": self.backend, "base_url": self.base_url}

    @classmethod
    def of(cls, spec: RunSpec) -> OptimizerEndpoint:
        return cls(spec.extra.get("optimizer_backend", "hf"), spec.extra.get("base_url"))


class ModelPool:
    """Opens each (model, backend, dtype) once per process and hands out the same generator afterwards.

    `opener` defaults to `open_generator` (HF weights, wrapped in the response cache); tests pass scripted
    generators. `release(model)` drops a model and frees its weights.
    """

    def __init__(
        self, *, opener: Opener | None = None, cache: bool = True, threads: int | None = None, batch_size: int = 8
    ) -> None:
        self._opener = opener
        self.cache, self.threads, self.batch_size = cache, threads, batch_size
        self._open: dict[tuple[str, str, str], Generator] = {}
        self._gradient: dict[tuple[str, str], Any] = {}
        self.loads: list[tuple[str, str, str]] = []  # what was opened, in order (tests read it)

    def generator(self, model: str, *, backend: str = "hf", dtype: str = "float32", base_url: str | None = None) -> Generator:
        key = (model, backend, dtype)
        if key not in self._open:
            if self._opener is not None:
                self._open[key] = self._opener(model, backend, dtype)
            else:
                from harness.backends import open_generator

                self._open[key] = open_generator(
                    model, backend=backend, dtype=dtype, threads=self.threads, batch_size=self.batch_size, cache=self.cache,
                    base_url=base_url,
                )
            self.loads.append(key)
        return self._open[key]

    def gradient_model(self, model: str, *, dtype: str = "float32") -> Any:
        """The HF model object itself (GReaTer's gradients), sharing the weights loaded for decoding."""
        key = (model, dtype)
        if key not in self._gradient:
            gen = self.generator(model, backend="hf", dtype=dtype)
            inner = getattr(gen, "inner", gen)  # a CachedGenerator wraps the HFGenerator
            if not hasattr(inner, "model"):
                raise BenchError(
                    f"model {model!r} has no Hugging Face weights in this process: gradient methods need backend hf"
                )
            self._gradient[key] = inner
        return self._gradient[key]

    def release(self, model: str) -> None:
        """Forget every generator of `model` and free its weights (the next use loads it again)."""
        for key in [k for k in self._open if k[0] == model]:
            _free_weights(self._open.pop(key))
        for key in [k for k in self._gradient if k[0] == model]:
            del self._gradient[key]
        gc.collect()

    def close(self) -> None:
        for model in {k[0] for k in self._open}:
            self.release(model)


def _free_weights(gen: Any) -> None:
    """Drop the HF backend's process-wide reference to these weights, if it holds one."""
    inner = getattr(gen, "inner", gen)
    model = getattr(inner, "model", None)
    if model is None:
        return
    try:
        from harness.backends import hf
    except ImportError:  # pragma: no cover - torch missing: no HF weights either
        return
    hf.unload(model)


# ------------------------------------------------------------------------------------------ one cell


def cell_optimizer(spec: RunSpec) -> Any:
    """The method of an optimize spec, configured from `spec.extra` (preset and overrides) as run_optimize does."""
    from harness.methods import make_optimizer

    extra = dict(spec.extra)
    preset = extra.pop("preset", "cpu")
    for key in ("budget", "optimizer_model", "optimizer_backend", "base_url"):
        extra.pop(key, None)
    return make_optimizer(spec.method, preset=preset, **extra)


def run_cell(
    spec: RunSpec,
    *,
    pool: ModelPool | None = None,
    data_dir: str | Path | None = None,
    out: str | Path = DEFAULT_RESULTS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one optimize cell (optimize -> dev -> test) and return its record (summary.json's content).

    A finished cell is read back without opening any model; an unfinished one resumes from its step log.
    Without a `pool` the models are opened for this call and released at the end.
    """
    if spec.kind != "optimize":
        raise ValueError("run_cell takes an optimize spec")
    folder = RunFolder(Path(out), spec)
    if folder.finished:
        return folder.summary()
    own = pool is None
    pool = pool or ModelPool()
    try:
        optimizer = cell_optimizer(spec)
        task_model = pool.generator(spec.model, backend=spec.backend, dtype=spec.dtype)
        opt_name = spec.extra.get("optimizer_model") or spec.model
        endpoint = OptimizerEndpoint.of(spec)
        opt_model = None
        if endpoint.backend != "hf":
            opt_model = pool.generator(opt_name, backend=endpoint.backend, dtype=spec.dtype, base_url=endpoint.base_url)
        elif opt_name != spec.model:
            opt_model = pool.generator(opt_name, backend=spec.backend, dtype=spec.dtype)
        needs_gradients = getattr(optimizer, "needs_gradients", False)
        gradient = pool.gradient_model(spec.model, dtype=spec.dtype) if needs_gradients else None
        return run_optimize(
            spec, task_model, optimizer_model=opt_model, gradient_model=gradient, data_dir=data_dir, out=out,
            progress=progress, optimizer=optimizer,
        )
    finally:
        if own:
            pool.close()


# ------------------------------------------------------------------------------------------ the grid


@dataclass(frozen=True, kw_only=True)
class GridStatus:
    """What a progress display shows; sent on every event."""

    event: str  # "skip" (already finished), "start", "finish", "fail" or "end"
    cell: Cell | None
    index: int  # 0-based index of `cell` in the grid
    total: int
    done: int  # cells finished (including skipped ones)
    failed: int
    running: int  # 0 or 1
    left: int  # cells not started yet
    elapsed: float  # seconds since the grid started
    eta_seconds: float | None  # None until a cell has been computed in this process
    record: Mapping[str, Any] | None = None
    error: str | None = None

    def line(self) -> str:
        eta = "?" if self.eta_seconds is None else format_seconds(self.eta_seconds)
        return f"{self.done}/{self.total} done, {self.running} running, {self.left} left, {self.failed} failed; ETA {eta}"


def format_seconds(s: float) -> str:
    s = round(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def estimate_eta(
    durations: Mapping[str, Sequence[float]], remaining: Iterable[str], running: tuple[str, float] | None = None
) -> float | None:
    """Seconds left: each remaining cell takes the mean wall time of finished cells of its method (or of
    all finished cells for a method not seen yet); the running cell its estimate minus its elapsed time."""
    every = [d for ds in durations.values() for d in ds]
    if not every:
        return None
    overall = sum(every) / len(every)

    def guess(method: str) -> float:
        ds = durations.get(method) or ()
        return sum(ds) / len(ds) if ds else overall

    eta = sum(guess(m) for m in remaining)
    if running is not None:
        eta += max(0.0, guess(running[0]) - running[1])
    return eta


CellRunner = Callable[..., dict[str, Any]]


def run_grid(
    methods: Sequence[str],
    tasks: Sequence[str] | str,
    models: Sequence[str],
    seeds: Sequence[int],
    preset: str = "cpu",
    *,
    settings: GridSettings | None = None,
    data_dir: str | Path | None = None,
    out: str | Path = DEFAULT_RESULTS,
    pool: ModelPool | None = None,
    on_status: Callable[[GridStatus], None] | None = None,
    progress: Callable[[Cell, str], None] | None = None,
    keep_going: bool = False,
    runner: CellRunner = run_cell,
) -> list[dict[str, Any]]:
    """Run every (method, task, model, seed) cell in `make_cells` order; return their records in that order.

    Finished cells are skipped (read back), unfinished ones resume. `on_status` gets a `GridStatus` on every
    event, `progress(cell, message)` the method's own messages. A failing cell stops the grid unless
    `keep_going` (its record is then `{"run_id", "error"}`); Ctrl-C stops it at once.
    """
    from harness.methods import load_methods
    from harness.optimize import OPTIMIZERS
    from tasks import expand_tasks, get_task

    settings = settings or GridSettings(preset=preset)
    if settings.preset != preset:
        settings = dataclasses.replace(settings, preset=preset)
    if not methods or not models or not seeds:
        raise BenchError("a grid needs at least one method, one model and one seed")
    load_methods()
    for m in methods:  # fail on bad names before any model loads
        OPTIMIZERS.get(m)
    task_names = expand_tasks(tasks)
    for t in task_names:
        get_task(t)
    cells = make_cells(list(methods), task_names, list(models), [int(s) for s in seeds])
    specs = [c.spec(settings) for c in cells]
    own = pool is None
    pool = pool or ModelPool()
    notify = on_status or (lambda _s: None)
    t_grid = time.perf_counter()
    durations: dict[str, list[float]] = {}
    records: list[dict[str, Any]] = []
    done = failed = 0

    def status(event: str, i: int, running: int, record: Any = None, error: str | None = None,
               t_cell: float | None = None) -> None:
        cur = (cells[i].method, time.perf_counter() - t_cell) if running and t_cell is not None else None
        left = len(cells) - i - 1 if event != "end" else 0
        notify(GridStatus(
            event=event, cell=cells[i] if event != "end" else None, index=i, total=len(cells), done=done, failed=failed,
            running=running, left=left, elapsed=time.perf_counter() - t_grid,
            eta_seconds=estimate_eta(durations, (c.method for c in cells[i + 1 :]), cur) if event != "end" else 0.0,
            record=record, error=error,
        ))

    try:
        for i, (cell, spec) in enumerate(zip(cells, specs)):
            folder = RunFolder(Path(out), spec)
            if folder.finished:
                records.append(folder.summary())
                done += 1
                status("skip", i, 0, records[-1])
            else:
                t_cell = time.perf_counter()
                status("start", i, 1, t_cell=t_cell)
                say = (lambda msg, c=cell: progress(c, msg)) if progress else None
                try:
                    record = runner(spec, pool=pool, data_dir=data_dir, out=out, progress=say)
                except Exception as e:  # not KeyboardInterrupt: Ctrl-C always stops the grid
                    if not keep_going:
                        raise
                    failed += 1
                    records.append({"run_id": spec.run_id, "error": f"{type(e).__name__}: {e}"})
                    status("fail", i, 0, error=records[-1]["error"])
                else:
                    durations.setdefault(cell.method, []).append(time.perf_counter() - t_cell)
                    done += 1
                    records.append(record)
                    status("finish", i, 0, record)
            if i + 1 == len(cells) or cells[i + 1].model != cell.model:
                pool.release(cell.model)  # its last cell: free the weights before the next model loads
        status("end", len(cells) - 1, 0)
    finally:
        if own:
            pool.close()
    return records


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" or "0-2" -> [0, 1, 2] (non-negative integers, duplicates dropped)."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        a, _, b = part.partition("-")
        if not a.isdigit() or (b and not b.isdigit()):
            raise BenchError(f"bad seed list {text!r}: use non-negative integers like 0,1,2 or a range 0-2")
        out.extend(range(int(a), int(b or a) + 1))
    if not out:
        raise BenchError("no seed given: use e.g. --seeds 0 or --seeds 0,1,2")
    return list(dict.fromkeys(out))


def parse_list(text: str, what: str) -> list[str]:
    items = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not items:
        raise BenchError(f"no {what} given")
    return items
