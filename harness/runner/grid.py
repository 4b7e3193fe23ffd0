"""The benchmark grid: every (method, task, model, seed) cell, run one after another, resumable.

A cell is executed by one function, `harness.runner.cell.run_cell(spec) -> record`, so cells can be sent to a cluster:
the spec (a frozen `RunSpec`, its hash the run id) is everything a worker needs. In one process, models are
opened through a small `ModelPool` (`harness.runner.pool`), so each model loads once however many cells use it;
cells are ordered model by model and a model is released when its last cell is done. A backend whose models
cannot be freed (vLLM: an engine lives as long as its process) runs each model's cells in a child process of
its own instead (`harness.runner.child`), which reports every cell's start and end, so progress and ETA
(`harness.runner.progress`) look the same.

Resuming is the run folder's job: a finished cell (summary.json present) is read back, an unfinished one
continues from its last completed step (steps.jsonl, see `harness.runner.run.run_optimize`). Ctrl-C or a crash
therefore loses at most the step in progress.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness.runner.pool  # ModelPool is looked up there on every use, the one place tests replace it
from harness.core.context import Progress
from harness.core.io import check_writable
from harness.core.spec import RunSpec
from harness.core.types import BenchError
from harness.runner.cell import run_cell
from harness.runner.cells import Grid
from harness.runner.child import Send, needs_own_process, run_in_child
from harness.runner.data import RunData
from harness.runner.progress import Board, GridStatus, PhaseLines
from harness.runner.records import RunFolder
from harness.runner.run import DEFAULT_RESULTS

if TYPE_CHECKING:
    from harness.runner.ray_executor import RayExecutor

# ------------------------------------------------------------------------------------------ the grid


CellRunner = Callable[..., dict[str, Any]]


def run_grid(
    grid: Grid,
    *,
    out: str | Path = DEFAULT_RESULTS,
    pool: harness.runner.pool.ModelPool | None = None,
    on_status: Callable[[GridStatus], None] | None = None,
    progress: Progress | None = None,
    keep_going: bool = False,
    isolate: bool | None = None,
    runner: CellRunner = run_cell,
    executor: RayExecutor | None = None,
) -> list[dict[str, Any]]:
    """Run every cell of `grid` (`harness.runner.cells.resolve_grid`) in its order; return their records in that order.

    Finished cells are skipped (read back), unfinished ones resume. `on_status` gets a `GridStatus` on every
    event, `progress` each cell's lines (`ProgressEvent.text`, `.run` its run id): the method's own messages and
    its evaluations' counts made into lines. A failing cell stops the grid unless
    `keep_going` (its record is then `{"run_id", "error"}`); Ctrl-C stops it at once.

    `isolate`: run each model's cells in a child process of its own (True), in this process (False), or decide
    by backend (None: a child for backends outside `harness.runner.child.IN_PROCESS_BACKENDS`, such as vllm). A child
    opens models as `pool` would (its opener must then be a "module:function" string) and runs `run_cell`, not
    `runner`. A failed child stops the grid with one line naming the model and its log; with `keep_going` the
    model's unfinished cells are recorded as failed with that line and the grid goes on with the next model.

    `executor`: a started `RayExecutor` runs the unfinished cells instead, several at once (`isolate` and
    `pool` are then the workers' business); finished cells are skipped here all the same.
    """
    specs = grid.specs
    check_writable(out)  # before any model loads
    if executor is not None:
        return _run_grid_on(executor, grid, on_status, progress, keep_going=keep_going, out=out)
    own = pool is None
    pool = pool or harness.runner.pool.ModelPool()
    own_process = {s.model: needs_own_process(s.backend) if isolate is None else isolate for s in specs}
    if any(own_process.values()):
        pool.child_settings()  # an opener function cannot reach a child: say so before anything runs
    board = Board(specs, on_status or (lambda _s: None), progress)
    try:
        for model in own_process:
            todo = []
            for i in (i for i, s in enumerate(specs) if s.model == model):
                folder = RunFolder(Path(out), specs[i])
                if folder.finished:
                    board.skip(i, folder.summary())
                else:
                    todo.append(i)
            if todo and own_process[model]:
                _run_cells_in_child(model, grid.subset(todo), pool, board.listener(todo), keep_going=keep_going, out=out)
            elif todo:
                run_cells(grid.subset(todo), pool, board.listener(todo), runner=runner, keep_going=keep_going, out=out)
                pool.release(model)  # its last cell: free the weights before the next model loads
        board.end()
    finally:
        if own:
            pool.close()
    return board.records


def _run_grid_on(
    executor: RayExecutor, grid: Grid, on_status: Callable[[GridStatus], None] | None,
    progress: Progress | None, *, keep_going: bool, out: str | Path,
) -> list[dict[str, Any]]:
    """`run_grid` on a parallel executor: finished cells are read back, the rest go to the executor at once."""
    specs = grid.specs
    todo = [i for i, s in enumerate(specs) if not RunFolder(Path(out), s).finished]
    board = Board(specs, on_status or (lambda _s: None), progress, parallel=executor.parallelism(len(todo)))
    for i, s in enumerate(specs):
        if i not in todo:
            board.skip(i, RunFolder(Path(out), s).summary())
    if todo:
        executor.run([specs[i] for i in todo], board.listener(todo), keep_going=keep_going, data_dir=grid.data.data_dir,
                     out=out)
    board.end()
    return board.records


def run_cells(
    grid: Grid, pool: harness.runner.pool.ModelPool, send: Send, *, keep_going: bool = False,
    runner: CellRunner = run_cell, out: str | Path = DEFAULT_RESULTS,
) -> None:
    """Run the specs of `grid` one after another, with its data and optimizers, telling `send` about the k-th:
    ["start", k], ["say", k, line] (its progress: the method's lines and its evaluations' counts as `PhaseLines`
    makes them), then ["finish", k, record] or, with `keep_going`,
    ["fail", k, error] (without it the error is raised). The same messages go to the grid in this process or
    through a child's pipe."""
    for k, spec in enumerate(grid.specs):
        send(["start", k])
        try:
            lines = PhaseLines(lambda e, k=k: send(["say", k, e.text]))
            record = runner(spec, pool=pool, data=grid.data, optimizer=grid.optimizers(spec), out=out, progress=lines)
        except Exception as e:  # not KeyboardInterrupt: Ctrl-C always stops the grid
            if not keep_going:
                raise
            send(["fail", k, f"{type(e).__name__}: {e}"])
        else:
            send(["finish", k, record])


def _run_cells_in_child(
    model: str, grid: Grid, pool: harness.runner.pool.ModelPool, send: Send, *, keep_going: bool, out: str | Path,
) -> None:
    """`run_cells` for the cells of `model` in a child process, so this process never loads it and everything
    it held is freed when the child exits. Each cell resumes from its step log, so a crashed child loses at
    most the step in progress; with `keep_going` the cells it did not end are sent as failed."""
    data_dir = grid.data.data_dir
    job = {"specs": [s.to_dict() for s in grid.specs], "pool": pool.child_settings(), "keep_going": keep_going,
           "data_dir": str(Path(data_dir).resolve()) if data_dir is not None else None, "out": str(Path(out).resolve())}
    ended: set[int] = set()

    def forward(message: list[Any]) -> None:
        if message[0] in ("finish", "fail"):
            ended.add(message[1])
        send(message)

    try:
        run_in_child("harness.runner.grid:run_cells_job", job, on_message=forward, what=f"running the cells of {model}",
                     log_name=f"run-{Path(model).name}", kept="finished cells and steps are kept")
    except BenchError as e:
        if not keep_going:
            raise
        for k in range(len(grid.specs)):
            if k not in ended:
                send(["fail", k, str(e)])


def run_cells_job(job: dict[str, Any], send: Send) -> None:
    """The child's side of `_run_cells_in_child` (`python -m harness.runner.child harness.runner.grid:run_cells_job`)."""
    pool = harness.runner.pool.ModelPool(harness.runner.pool.PoolSettings.from_dict(job["pool"]))
    grid = Grid(specs=tuple(RunSpec.from_dict(s) for s in job["specs"]), data=RunData(job["data_dir"]))  # rows hashed once
    try:
        run_cells(grid, pool, send, keep_going=job["keep_going"], out=job["out"])
    finally:
        pool.close()
