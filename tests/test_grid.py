"""The grid runner: cell specs, the model pool, progress and ETA, and resume after crashes at several points
(the resumed records equal an uninterrupted run's). Scripted models only: seconds in total. The grid with a
child process per model: test_grid_children.py; options resolved once: test_grid_resolve.py."""

from __future__ import annotations

import json

import pytest
from fakeworld import add_method
from gridworld import (
    TASK,
    TASK_NAME,
    Crash,
    StepOptimizer,
    TaskModel,
    snapshot,
)
from typer.testing import CliRunner

import harness.cli.grid
import harness.runner.grid
import harness.runner.records
import harness.runner.run
from harness.core.spec import OptimizerEndpoint, RunSpec
from harness.core.types import ZERO_SHOT_COT, BenchError, Budget, Needs, PromptPosition
from harness.runner.cell import run_cell
from harness.runner.cells import Cell, GridSettings, make_cells, parse_seeds, resolve_grid
from harness.runner.grid import run_grid
from harness.runner.pool import ModelPool
from harness.runner.progress import estimate_eta


def spec_of(cell, settings):
    return resolve_grid([cell.method], [cell.task], [cell.model], [cell.seed], settings).specs[0]


METHODS = ["zs-cot", "fake-steps"]


class World:
    def __init__(self) -> None:
        self.optimizer = StepOptimizer()
        self.opened: list[str] = []

    def opener(self, model: str, backend: str, dtype: str) -> TaskModel:
        self.opened.append(model)
        return TaskModel(model)

    def grid(self, out, *, seeds=(0, 1), models=("fake-a",), methods=METHODS, **kw):
        pool = ModelPool(opener=self.opener)  # a fresh pool: a new process
        grid = resolve_grid(methods, [TASK_NAME], list(models), list(seeds), GridSettings(preset="smoke"))
        return run_grid(grid, out=out, pool=pool, **kw), pool


@pytest.fixture
def world(monkeypatch):
    import tasks

    real = tasks.get_task
    monkeypatch.setattr(tasks, "get_task", lambda name: TASK if name == TASK_NAME else real(name))
    w = World()
    add_method(monkeypatch, "fake-steps", lambda preset="cpu", **kw: w.optimizer)
    return w


def test_cells_and_spec_match_bench_optimize():
    cells = make_cells(["a", "b"], ["t1", "t2"], ["m1", "m2"], [0, 1])
    assert len(cells) == 16 and cells[0] == Cell(method="a", task="t1", model="m1", seed=0)
    assert [c.model for c in cells[:8]] == ["m1"] * 8  # model by model: each loads once
    assert [(c.seed, c.task, c.method) for c in cells[:4]] == [(0, "t1", "a"), (0, "t1", "b"), (0, "t2", "a"), (0, "t2", "b")]
    spec = cells[0].spec(GridSettings(preset="smoke", limit=5), "fp")
    assert spec.kind == "optimize" and spec.max_new_tokens == 32 and spec.limit == 5 and spec.position is PromptPosition.AFTER
    assert (spec.preset, spec.budget, spec.optimizer, spec.overrides, spec.data) == ("smoke", None, None, (), "fp")
    assert cells[0].spec(GridSettings(preset="cpu"), "fp").max_new_tokens == 128
    assert cells[0].spec(GridSettings(preset="cpu"), "fp").position.value == "before"
    assert cells[0].spec(GridSettings(preset="paper"), "fp").position.value == "after"
    assert cells[0].spec(GridSettings(budget_tokens=10), "fp").budget == Budget(task_tokens=10)
    assert RunSpec.from_dict(spec.to_dict()) == spec  # specs travel as JSON


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("0-2,5,1") == [0, 1, 2, 5]
    for bad in ("x", "", "1-a", "-1"):
        with pytest.raises(BenchError):
            parse_seeds(bad)
    with pytest.raises(BenchError, match="runs backwards: write it low to high, e.g. 0-2"):
        parse_seeds("2-0")


def test_eta_from_finished_cells():
    assert estimate_eta({}, ["a"]) is None
    d = {"slow": [100.0, 300.0], "fast": [10.0]}
    assert estimate_eta(d, ["slow", "fast", "new"]) == pytest.approx(200 + 10 + 410 / 3)
    assert estimate_eta(d, ["fast"], running=("slow", 150.0)) == pytest.approx(10 + 50)
    assert estimate_eta(d, [], running=("fast", 99.0)) == 0.0


def test_grid_runs_skips_and_reports_progress(tmp_path, world):
    events = []
    records, _ = world.grid(tmp_path, on_status=events.append)
    assert [r["method"] for r in records] == ["zs-cot", "fake-steps"] * 2 and [r["seed"] for r in records] == [0, 0, 1, 1]
    assert records[0]["prompt"] == ZERO_SHOT_COT
    assert world.opened == ["fake-a"]  # one load for four cells
    kinds = [(e.event, e.done, e.running, e.left) for e in events]
    assert kinds[:3] == [("start", 0, 1, 3), ("finish", 1, 0, 3), ("start", 1, 1, 2)] and kinds[-1] == ("end", 4, 0, 0)
    assert events[0].eta_seconds is None and events[1].eta_seconds is not None
    # fake-steps ran 4 steps per seed and logged them
    steps = [json.loads(line) for line in (tmp_path / records[1]["run_id"] / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 1, 2, 3] and all("train_accuracy" in s for s in steps)

    again = []
    world.optimizer = StepOptimizer()
    records2, _ = world.grid(tmp_path, on_status=again.append)
    assert records2 == records and world.opened == ["fake-a"]  # nothing computed, no model opened
    assert [e.event for e in again] == ["skip"] * 4 + ["end"] and world.optimizer.started == []


POINTS = {
    "before the first step": {"crash_at": 0},
    "in the middle of step 2": {"crash_at": 2},
    "Ctrl-C in step 1": {"crash_at": 1, "exc": KeyboardInterrupt},
    "in the final test evaluation": {"evaluate": True},
    "between predictions and summary": {"summary": True},
}


@pytest.mark.parametrize("point", list(POINTS))
def test_resume_after_crash_equals_uninterrupted_run(tmp_path, world, monkeypatch, point):
    plan = POINTS[point]
    reference, _ = world.grid(tmp_path / "ref")
    crashed = tmp_path / "crash"

    world.optimizer = StepOptimizer(crash_at=plan.get("crash_at"), exc=plan.get("exc", Crash))
    if plan.get("evaluate"):
        real = harness.runner.run.evaluate_on
        armed = [True]

        def flaky(task, examples, instruction, *a, **kw):
            if armed[0] and instruction != ZERO_SHOT_COT and next(iter(examples)).id.startswith("test"):
                armed[0] = False
                raise Crash("killed during the test evaluation")
            return real(task, examples, instruction, *a, **kw)

        monkeypatch.setattr(harness.runner.run, "evaluate_on", flaky)
    if plan.get("summary"):
        real_write = harness.runner.records.atomic_write_json
        armed = [True]

        def killed(path, obj):
            if armed[0] and path.name == "summary.json" and "fake-steps" in path.parent.name:
                armed[0] = False
                raise Crash("killed before summary.json")
            return real_write(path, obj)

        monkeypatch.setattr(harness.runner.records, "atomic_write_json", killed)

    with pytest.raises(KeyboardInterrupt if plan.get("exc") is KeyboardInterrupt else Crash):
        world.grid(crashed)
    cell = crashed / reference[1]["run_id"]
    assert (crashed / reference[0]["run_id"] / "summary.json").exists()  # the cell before is finished
    assert not (cell / "summary.json").exists()
    if plan.get("crash_at") == 0:  # failed before anything but spec.json: no folder is left to explain
        assert not cell.exists()
    else:
        assert (cell / "spec.json").exists()
    assert not cell.exists() or not [p for p in cell.iterdir() if p.name.startswith(".")]  # no torn temporary file left behind
    first_attempt = list(world.optimizer.started)

    world.optimizer.started.clear()
    events = []
    resumed, _ = world.grid(crashed, on_status=events.append)
    assert [e.event for e in events][:2] == ["skip", "start"]
    assert [r["run_id"] for r in resumed] == [r["run_id"] for r in reference]
    assert snapshot(crashed) == snapshot(tmp_path / "ref")  # same specs, steps, predictions, summaries
    if "crash_at" in plan:  # only the step in progress is redone
        k = plan["crash_at"]
        assert first_attempt == list(range(k + 1))
        assert world.optimizer.started == list(range(k, 4)) + [0, 1, 2, 3]  # then seed 1 from scratch
    else:  # crashed after the last step: no step is redone
        assert world.optimizer.started == [0, 1, 2, 3]


def test_corrupt_step_log_is_named(tmp_path, world):
    world.optimizer = StepOptimizer(crash_at=2)
    with pytest.raises(Crash):
        world.grid(tmp_path, seeds=[0])
    steps = next(tmp_path.glob("optimize-fake-steps-*")) / "steps.jsonl"
    lines = steps.read_text().splitlines()
    steps.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2] + "\n")  # a torn last line
    with pytest.raises(BenchError, match=rf"{steps}.* line 2"):
        world.grid(tmp_path, seeds=[0])


def test_keep_going_records_the_error(tmp_path, world):
    world.optimizer = StepOptimizer(crash_at=1)
    records, _ = world.grid(tmp_path, seeds=[0], keep_going=True)
    assert records[0]["method"] == "zs-cot" and "simulated crash at step 1" in records[1]["error"]


def test_run_cell_opens_models_through_the_pool(tmp_path, world):
    sentinel = object()

    class NeedsGradients(StepOptimizer):
        needs = Needs(gradients=True)

        def optimize(self, task, train, dev, ctx):
            assert ctx.gradient_model.model is sentinel
            return super().optimize(task, train, dev, ctx)

    world.optimizer = NeedsGradients(steps=1)

    def opener(model, backend, dtype):
        gen = TaskModel(model)
        gen.model = sentinel  # what an HF generator exposes to gradient code
        return gen

    pool = ModelPool(opener=opener)
    spec = spec_of(Cell(method="fake-steps", task=TASK_NAME, model="fake-a", seed=0), GridSettings(preset="smoke"))
    record = run_cell(spec, pool=pool, out=tmp_path)
    assert record["run_id"] == spec.run_id and record["test_accuracy"] == pytest.approx(record["test"]["accuracy"])
    assert pool.loads == [("fake-a", "hf", "float32")]
    empty = ModelPool(opener=opener)
    assert run_cell(spec, pool=empty, out=tmp_path) == record and empty.loads == []  # finished: no model opened


def test_unknown_names_fail_before_any_model_loads(tmp_path, world):
    with pytest.raises(BenchError, match="did you mean 'greater'"):
        world.grid(tmp_path, methods=["greatr"])
    with pytest.raises(BenchError, match="unknown task"):
        resolve_grid(["zs-cot"], ["bbh:navigat"], ["fake-a"], [0])
    assert world.opened == []


def test_cli_run_and_leaderboard(tmp_path, world, monkeypatch):
    import harness.backends
    from harness.cli import app

    monkeypatch.setattr(harness.backends, "open_generator", lambda model, **kw: TaskModel(model))
    monkeypatch.setattr(harness.cli.grid, "check_model", lambda model, backend, base_url=None: None)  # scripted models
    runner = CliRunner()
    args = ["run", "--methods", "zs-cot,fake-steps", "--tasks", TASK_NAME, "--models", "fake-a", "--seeds", "0-1",
            "--preset", "smoke", "--backend", "hf", "--out", str(tmp_path)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    summaries = [json.loads((p / "summary.json").read_text()) for p in tmp_path.iterdir() if (p / "summary.json").exists()]
    assert len(summaries) == 4
    for s in summaries:  # the final evaluations' rows and time, which the dry run prices later cells by
        dev_rows = 0 if s["meta"].get("dev_accuracy") is not None else 4  # zs-cot reports dev itself
        assert s["evaluation"]["rows"] == dev_rows + 6 + 6 and s["evaluation"]["seconds"] >= 0  # dev + test + zs-cot test
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and res.output.count("finished already") == 4
    res = runner.invoke(app, ["leaderboard", "--results", str(tmp_path), "--format", "md"])
    assert res.exit_code == 0 and "| fake-steps |" in res.output and "| zs-cot |" in res.output
    res = runner.invoke(app, ["run", "--methods", "greatr", "--tasks", TASK_NAME, "--out", str(tmp_path)])
    assert res.exit_code == 2 and "did you mean 'greater'" in res.output and "Traceback" not in res.output


def test_optimizer_llm_on_an_openai_endpoint(world, tmp_path):
    """A strong optimizer LLM on a server: its generator is opened on the openai backend, the task model on hf."""
    with pytest.raises(BenchError, match="needs --optimizer-model NAME and --base-url"):
        GridSettings(optimizer_backend="openai", optimizer_model="gpt-x")
    settings = GridSettings(preset="smoke", optimizer_model="gpt-x", optimizer_backend="openai", base_url="http://127.0.0.1:9/v1")
    spec = spec_of(Cell(method="fake-steps", task=TASK_NAME, model="fake-a", seed=0), settings)
    assert spec.optimizer == OptimizerEndpoint(model="gpt-x", backend="openai", base_url="http://127.0.0.1:9/v1")
    plain = spec_of(Cell(method="fake-steps", task=TASK_NAME, model="fake-a", seed=0), GridSettings(preset="smoke"))
    assert plain.optimizer is None  # the task model is its own optimizer LLM
    calls = []
    pool = ModelPool(opener=lambda model, backend, dtype: calls.append((model, backend)) or TaskModel(model))
    run_cell(spec, pool=pool, out=tmp_path)
    assert ("fake-a", "hf") in calls and ("gpt-x", "openai") in calls
