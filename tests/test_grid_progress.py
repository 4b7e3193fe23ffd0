"""One progress callback type and one pool-settings type: every progress report is a `ProgressEvent` (a method's
line, or an evaluation's counts), from `evaluate` up to the grid; the pool options of `bench run` are one
`PoolSettings`, the same for the local pool, a child process and the Ray workers."""

from __future__ import annotations

import contextlib

import pytest
from fakeworld import add_method
from gridworld import TASK, TASK_NAME, StepOptimizer, TaskModel
from typer.testing import CliRunner

import harness.cli.grid
import harness.runner.grid
import harness.runner.ray_executor
from harness.core.context import ProgressEvent
from harness.core.types import BenchError
from harness.runner.cell import run_cell
from harness.runner.cells import GridSettings, resolve_grid
from harness.runner.grid import run_grid
from harness.runner.pool import ModelPool, PoolSettings
from harness.runner.progress import PhaseLines


class Talking(StepOptimizer):
    """Says a line through its context, as every method does."""

    def optimize(self, task, train, dev, ctx):
        ctx.progress("fake-steps step 0 starts")
        return super().optimize(task, train, dev, ctx)


@pytest.fixture
def world(monkeypatch):
    import tasks

    monkeypatch.setattr(tasks, "get_task", lambda name, real=tasks.get_task: TASK if name == TASK_NAME else real(name))
    add_method(monkeypatch, "fake-steps", lambda preset="cpu", **kw: Talking(steps=2))


def test_a_cell_reports_everything_as_progress_events(tmp_path, world):
    (spec,) = resolve_grid(["fake-steps"], [TASK_NAME], ["fake-a"], [0], GridSettings(preset="smoke")).specs
    events: list[ProgressEvent] = []
    run_cell(spec, pool=ModelPool(opener=lambda m, b, d: TaskModel(m)), out=tmp_path, progress=events.append)
    assert events and all(type(e) is ProgressEvent for e in events)
    lines = [e.text for e in events if not e.counts]
    assert any(line.startswith("fake-steps step") for line in lines)  # the method's own lines, through ctx.progress
    phases = {e.phase for e in events if e.counts}
    assert {"dev reasoning", "test reasoning", "test, zero-shot CoT reasoning"} <= phases  # the final evaluations
    ends = [e for e in events if e.phase == "test reasoning" and e.done == e.total]
    assert ends and ends[-1].total == 6


def test_phase_lines_pass_text_on_and_make_counts_into_lines():
    said: list[ProgressEvent] = []
    lines = PhaseLines(said.append, "task", interval=3600)
    lines(ProgressEvent(text="opro step 1"))
    for done in (0, 1, 2, 3):
        lines(ProgressEvent(phase="reasoning", done=done, total=3, run="r1"))
    assert [e.text for e in said][0] == "opro step 1"
    assert [e.text.split(":")[0] for e in said[1:]] == ["task reasoning", "task reasoning"]  # start and end only
    assert said[-1].run == "r1" and "3/3 examples" in said[-1].text


def test_grid_progress_lines_name_their_run(tmp_path, world):
    grid = resolve_grid(["zs-cot", "fake-steps"], [TASK_NAME], ["fake-a"], [0, 1], GridSettings(preset="smoke"))
    said: list[ProgressEvent] = []
    run_grid(grid, out=tmp_path, pool=ModelPool(opener=lambda m, b, d: TaskModel(m)), progress=said.append)
    assert said and all(type(e) is ProgressEvent and not e.counts for e in said)
    ids = [s.run_id for s in grid.specs]
    assert {e.run for e in said} == set(ids)
    assert {e.run for e in said if e.text.startswith("fake-steps step")} == {ids[1], ids[3]}


def test_pool_settings_travel_whole():
    settings = PoolSettings(opener="gridworld:open_task_model", cache=False, threads=2, batch_size=3, device="cpu")
    pool = ModelPool(settings)
    assert PoolSettings.from_dict(pool.child_settings()) == settings  # what a child process builds its pool from
    assert ModelPool(settings, threads=1).settings == PoolSettings(**{**pool.child_settings(), "threads": 1})
    assert ModelPool(cache=False, batch_size=3).settings == PoolSettings(cache=False, batch_size=3)
    with pytest.raises(BenchError, match="cannot use an opener function"):
        ModelPool(opener=lambda *a: None).child_settings()


def test_bench_run_hands_one_pool_settings_to_the_pool_and_the_ray_workers(tmp_path, world, monkeypatch):
    seen = {}

    @contextlib.contextmanager
    def fake_executor(settings, pool):
        seen["ray"] = pool
        yield "executor"

    def fake_run_grid(grid, **kw):
        seen["local"], seen["executor"] = kw["pool"].settings, kw["executor"]
        return []

    monkeypatch.setenv("BENCH_CORE_LOCKS", str(tmp_path / "locks"))
    monkeypatch.setattr(harness.runner.ray_executor, "RayExecutor", fake_executor)
    monkeypatch.setattr(harness.runner.grid, "run_grid", fake_run_grid)
    monkeypatch.setattr(harness.cli.grid, "check_model", lambda model, backend, base_url=None: None)
    args = ["run", "--methods", "fake-steps", "--tasks", TASK_NAME, "--models", "fake-a", "--preset", "smoke",
            "--backend", "hf", "--out", str(tmp_path / "out"), "--no-cache", "--threads", "2", "--batch-size", "5",
            "--device", "cpu"]
    for executor in ("local", "ray"):
        res = CliRunner().invoke(app_(), [*args, "--executor", executor])
        assert res.exit_code == 0, res.output
    want = PoolSettings(cache=False, threads=2, batch_size=5, device="cpu")
    assert seen["ray"] == want and seen["local"] == want and seen["executor"] == "executor"


def app_():
    from harness.cli import app

    return app
