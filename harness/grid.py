"""The benchmark grid: every (method, task, model, seed) cell, run one after another, resumable.

A cell is executed by one function, `run_cell(spec) -> record`, so cells can later be sent to a cluster:
the spec (a frozen `RunSpec`, its hash the run id) is everything a worker needs. In one process, models are
opened through a small `ModelPool` (`harness.pool`), so each model loads once however many cells use it;
cells are ordered model by model and a model is released when its last cell is done. A backend whose models
cannot be freed (vLLM: an engine lives as long as its process) runs each model's cells in a child process of
its own instead (`harness.child`), which reports every cell's start and end, so progress and ETA
(`harness.progress`) look the same.

Resuming is the run folder's job: a finished cell (summary.json present) is read back, an unfinished one
continues from its last completed step (steps.jsonl, see `harness.run.run_optimize`). Ctrl-C or a crash
therefore loses at most the step in progress.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness.pool  # ModelPool is looked up there on every use, the one place tests replace it
from harness.child import Send, needs_own_process, run_in_child
from harness.progress import Board, GridStatus
from harness.records import RunFolder
from harness.run import DEFAULT_RESULTS, run_optimize
from harness.types import BenchError, PromptPosition, RunSpec

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
        from harness.backends import resolve_backend

        object.__setattr__(self, "backend", resolve_backend(self.backend))  # the spec records the real one
        if self.optimizer_backend == "openai" and not (self.base_url and self.optimizer_model):
            raise BenchError("--optimizer-backend openai needs --optimizer-model NAME and --base-url URL")
        if self.max_new_tokens < 1:
            raise BenchError("--max-new-tokens must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise BenchError("--limit must be at least 1")


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
    pool: harness.pool.ModelPool | None = None,
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
    pool = pool or harness.pool.ModelPool()
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
    pool: harness.pool.ModelPool | None = None,
    on_status: Callable[[GridStatus], None] | None = None,
    progress: Callable[[Cell, str], None] | None = None,
    keep_going: bool = False,
    isolate: bool | None = None,
    runner: CellRunner = run_cell,
) -> list[dict[str, Any]]:
    """Run every (method, task, model, seed) cell in `make_cells` order; return their records in that order.

    Finished cells are skipped (read back), unfinished ones resume. `on_status` gets a `GridStatus` on every
    event, `progress(cell, message)` the method's own messages. A failing cell stops the grid unless
    `keep_going` (its record is then `{"run_id", "error"}`); Ctrl-C stops it at once.

    `isolate`: run each model's cells in a child process of its own (True), in this process (False), or decide
    by backend (None: a child for backends outside `harness.child.IN_PROCESS_BACKENDS`, such as vllm). A child
    opens models as `pool` would (its opener must then be a "module:function" string) and runs `run_cell`, not
    `runner`. A failed child stops the grid with one line naming the model and its log; with `keep_going` the
    model's unfinished cells are recorded as failed with that line and the grid goes on with the next model.
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
    pool = pool or harness.pool.ModelPool()
    isolate = needs_own_process(settings.backend) if isolate is None else isolate
    if isolate:
        pool.child_settings()  # an opener function cannot reach a child: say so before anything runs
    board = Board(cells, specs, on_status or (lambda _s: None), progress)
    how = {"keep_going": keep_going, "data_dir": data_dir, "out": out}
    try:
        for model in dict.fromkeys(c.model for c in cells):
            todo = []
            for i in (i for i, c in enumerate(cells) if c.model == model):
                folder = RunFolder(Path(out), specs[i])
                if folder.finished:
                    board.skip(i, folder.summary())
                else:
                    todo.append(i)
            if todo and isolate:
                _run_cells_in_child(model, [specs[i] for i in todo], pool, board.listener(todo), **how)
            elif todo:
                run_cells([specs[i] for i in todo], pool, board.listener(todo), runner=runner, **how)
                pool.release(model)  # its last cell: free the weights before the next model loads
        board.end()
    finally:
        if own:
            pool.close()
    return board.records


def run_cells(
    specs: Sequence[RunSpec], pool: harness.pool.ModelPool, send: Send, *, keep_going: bool = False,
    runner: CellRunner = run_cell, data_dir: str | Path | None = None, out: str | Path = DEFAULT_RESULTS,
) -> None:
    """Run `specs` one after another, telling `send` about the k-th: ["start", k], ["say", k, message] (the
    method's progress), then ["finish", k, record] or, with `keep_going`, ["fail", k, error] (without it the
    error is raised). The same messages go to the grid in this process or through a child's pipe."""
    for k, spec in enumerate(specs):
        send(["start", k])
        try:
            record = runner(spec, pool=pool, data_dir=data_dir, out=out, progress=lambda msg, k=k: send(["say", k, msg]))
        except Exception as e:  # not KeyboardInterrupt: Ctrl-C always stops the grid
            if not keep_going:
                raise
            send(["fail", k, f"{type(e).__name__}: {e}"])
        else:
            send(["finish", k, record])


def _run_cells_in_child(
    model: str, specs: Sequence[RunSpec], pool: harness.pool.ModelPool, send: Send, *, keep_going: bool,
    data_dir: str | Path | None, out: str | Path,
) -> None:
    """`run_cells` for the cells of `model` in a child process, so this process never loads it and everything
    it held is freed when the child exits. Each cell resumes from its step log, so a crashed child loses at
    most the step in progress; with `keep_going` the cells it did not end are sent as failed."""
    job = {"specs": [s.to_dict() for s in specs], "pool": pool.child_settings(), "keep_going": keep_going,
           "data_dir": str(Path(data_dir).resolve()) if data_dir is not None else None, "out": str(Path(out).resolve())}
    ended: set[int] = set()

    def forward(message: list[Any]) -> None:
        if message[0] in ("finish", "fail"):
            ended.add(message[1])
        send(message)

    try:
        run_in_child("harness.grid:run_cells_job", job, on_message=forward, what=f"running the cells of {model}",
                     log_name=f"run-{Path(model).name}", kept="finished cells and steps are kept")
    except BenchError as e:
        if not keep_going:
            raise
        for k in range(len(specs)):
            if k not in ended:
                send(["fail", k, str(e)])


def run_cells_job(job: dict[str, Any], send: Send) -> None:
    """The child's side of `_run_cells_in_child` (`python -m harness.child harness.grid:run_cells_job`)."""
    pool = harness.pool.ModelPool(**job["pool"])
    try:
        run_cells([RunSpec(**s) for s in job["specs"]], pool, send, keep_going=job["keep_going"],
                  data_dir=job["data_dir"], out=job["out"])
    finally:
        pool.close()


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
