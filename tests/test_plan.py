"""`bench run --dry-run`: each cell's status (finished, partial, to do) and its estimated cost, priced from
finished cells of the same model, method, preset and budget where there are some, and nothing run or written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.core.io import atomic_write_json, write_jsonl
from harness.core.spec import RunSpec
from harness.core.types import Budget
from harness.runner.plan import make_plan

ROWS = {"bbh:navigate": 300}  # dev + test + zero-shot-CoT test rows scored at a cell's end


def spec(method: str, seed: int = 0, budget: int | None = 60_000, task: str = "bbh:navigate", model: str = "m") -> RunSpec:
    return RunSpec(kind="optimize", task=task, model=model, data="fp", method=method, seed=seed, preset="cpu",
                   budget=Budget(task_tokens=budget) if budget else None)


def finish(root: Path, s: RunSpec, *, tokens: float, wall: float, evaluation: dict | None = None, cached: int = 0) -> None:
    folder = root / s.run_id
    atomic_write_json(folder / "spec.json", {"schema": 1, "run_id": s.run_id, "spec": s.to_dict()})
    test = {"n": 1, "primary": "options", "readings": {}}  # what a finished cell's record holds besides its cost
    summary = {"schema": 1, "run_id": s.run_id, "test": test, "test_accuracy": 0.5, "primary": "options",
               "method": s.method, "preset": s.preset, "seed": s.seed,
               "cost": {"task_tokens_in": tokens, "task_tokens_out": 0, "task_calls": 100, "optimizer_calls": 10,
                        "cached_calls": cached, "wall_seconds": wall}}
    if evaluation is not None:
        summary["evaluation"] = evaluation
    atomic_write_json(folder / "summary.json", summary)


def plan_of(root: Path, specs, **kw):
    return {(c.spec.method, c.spec.seed): c for c in make_plan(specs, root, eval_rows=ROWS, reference=None, **kw).cells}


def test_statuses_and_estimates_from_finished_cells(tmp_path):
    finish(tmp_path, spec("ape", 0), tokens=60_000, wall=600, evaluation={"rows": 300, "seconds": 90})  # 100 tok/s
    partial = spec("ape", 2)
    write_jsonl(tmp_path / partial.run_id / "steps.jsonl", [
        {"step": 0, "cost": {"task_tokens_in": 20_000, "task_tokens_out": 0}},
        {"step": 1, "cost": {"task_tokens_in": 44_000, "task_tokens_out": 1_000}},
    ])
    specs = [spec("ape", 0), spec("ape", 1), partial, spec("pe2", 0, budget=30_000), spec("zs-cot", 0, budget=None)]
    cells = plan_of(tmp_path, specs, parallel=2)
    assert (cells["ape", 0].status, cells["ape", 0].tokens, cells["ape", 0].seconds) == ("finished", 0.0, 0.0)
    # the same method, preset and budget ran here: its wall time, plus 0.3 s per evaluated row
    assert cells["ape", 1].status == "to do" and cells["ape", 1].measured
    assert cells["ape", 1].seconds == pytest.approx(600 + 90)
    # a partial cell pays for the tokens it has left: a quarter of the budget
    assert cells["ape", 2].status == "partial (2 steps)"
    assert cells["ape", 2].seconds == pytest.approx(600 * 15_000 / 60_000 + 90)
    assert cells["ape", 2].tokens == pytest.approx(15_000 + 300 * (partial.max_new_tokens + 200))
    # never ran: its budget at the finished cells' rate (100 tok/s), plus the measured evaluation time
    assert not cells["pe2", 0].measured and cells["pe2", 0].seconds == pytest.approx(300 + 90)
    assert cells["zs-cot", 0].seconds == pytest.approx(90)  # a fixed prompt: evaluations only
    plan = make_plan(specs, tmp_path, eval_rows=ROWS, reference=None, parallel=2)
    assert plan.rate == pytest.approx(100) and plan.eval_source == "median of 1 cells"
    left = [690, 240, 390, 90]
    assert plan.seconds == pytest.approx(sum(left)) and plan.wall_seconds == pytest.approx(sum(left) / 2)
    one = make_plan(specs, tmp_path, eval_rows=ROWS, reference=None, parallel=1)
    assert one.wall_seconds == pytest.approx(sum(left))
    # --rate prices what was never measured; measured cells keep their measured time
    cells = plan_of(tmp_path, specs, rate=50.0)
    assert cells["pe2", 0].seconds == pytest.approx(30_000 / 50 + 90) and cells["ape", 1].seconds == pytest.approx(690)


def test_unmeasured_evaluations_and_cached_cells(tmp_path):
    finish(tmp_path, spec("ape", 0), tokens=60_000, wall=600)  # an older record: no evaluation timing
    finish(tmp_path, spec("opro", 0), tokens=60_000, wall=5, cached=100)  # replayed from the cache: no measurement
    cells = plan_of(tmp_path, [spec("ape", 1), spec("opro", 1)])
    rows_seconds = 300 * spec("ape").max_new_tokens / 100  # the rows' generated tokens at the one usable cell's rate
    assert cells["ape", 1].seconds == pytest.approx(600 + rows_seconds)
    assert not cells["opro", 1].measured and cells["opro", 1].seconds == pytest.approx(600 + rows_seconds)
    # a different budget is a different cost: priced by its tokens, not by the 60k cell's wall time
    other = plan_of(tmp_path, [spec("ape", 1, budget=120_000)])["ape", 1]
    assert not other.measured and other.seconds == pytest.approx(1200 + rows_seconds)


def test_cells_of_the_same_model_and_task_price_first(tmp_path):
    finish(tmp_path, spec("greater", 0, None), tokens=60_000, wall=600, evaluation={"rows": 300, "seconds": 0})
    finish(tmp_path, spec("greater", 0, None, task="bbh:sports"), tokens=60_000, wall=1300,
           evaluation={"rows": 300, "seconds": 0})
    finish(tmp_path, spec("greater", 0, None, model="big"), tokens=60_000, wall=5000, evaluation={"rows": 300, "seconds": 0})
    rows = {"bbh:navigate": 300, "bbh:sports": 300, "bbh:other": 300}
    plan = {c.spec.task + c.spec.model: c.seconds for c in make_plan(
        [spec("greater", 1, None), spec("greater", 1, None, task="bbh:sports"), spec("greater", 1, None, task="bbh:other"),
         spec("greater", 1, None, model="big", task="bbh:other")], tmp_path, eval_rows=rows, reference=None).cells}
    assert plan["bbh:navigatem"] == pytest.approx(600) and plan["bbh:sportsm"] == pytest.approx(1300)
    assert plan["bbh:otherm"] == pytest.approx(950)  # no cell of this task: the model's cells (median of 600, 1300)
    assert plan["bbh:otherbig"] == pytest.approx(5000)


def test_a_model_is_priced_at_its_own_speed(tmp_path):
    """A 0.5B model's cells are not priced at a 135M model's speed: its own finished cells set its rate and its
    seconds per evaluated row; a model with none is named (its price borrows the others' speed)."""
    finish(tmp_path, spec("ape", 0, model="small"), tokens=60_000, wall=600, evaluation={"rows": 300, "seconds": 90})
    finish(tmp_path, spec("ape", 0, model="big"), tokens=60_000, wall=2400, evaluation={"rows": 300, "seconds": 360})
    specs = [spec("pe2", 0, budget=30_000, model="big"), spec("ape", 1, model="big"), spec("pe2", 0, budget=30_000, model="small"),
             spec("ape", 1, model="new")]
    plan = make_plan(specs, tmp_path, eval_rows=ROWS, reference=None)
    cells = {(c.spec.method, c.spec.model): c for c in plan.cells}
    assert cells["pe2", "big"].seconds == pytest.approx(30_000 / 25 + 300 * 1.2) and not cells["pe2", "big"].measured
    assert cells["pe2", "small"].seconds == pytest.approx(30_000 / 100 + 300 * 0.3)
    assert cells["ape", "big"].seconds == pytest.approx(2400 + 360) and cells["ape", "big"].measured
    # no cell of its own: the other models' median speed, not "measured", and the plan names the model
    assert not cells["ape", "new"].measured and plan.unmeasured_models == ("new",)
    assert cells["ape", "new"].seconds == pytest.approx(60_000 / 62.5 + 300 * 0.75)
    cells = {(c.spec.method, c.spec.model): c for c in make_plan(specs, tmp_path, eval_rows=ROWS, reference=None, rate=50.0).cells}
    assert cells["pe2", "big"].seconds == pytest.approx(30_000 / 50 + 360)  # --rate: every model's unmeasured part


def test_cli_dry_run_runs_nothing_and_writes_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import harness.runner.pool
    from harness.cli import app

    def refuse(*a, **kw):
        raise AssertionError("the dry run opened a model")

    monkeypatch.setattr(harness.runner.pool.ModelPool, "generator", refuse)
    data = Path(os.environ.get("BENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    out = tmp_path / "runs"
    r = CliRunner().invoke(app, ["run", "--methods", "zs-cot,ape", "--tasks", "bbh:navigate", "--models", "smollm2-135m",
                                 "--seeds", "0,1", "--budget", "60000", "--results", str(out), "--data-dir", str(data),
                                 "--dry-run", "--executor", "ray", "--max-parallel", "2"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # rich wraps lines at the terminal's width
    assert "4 of 4 cells to run" in text and "wall time at 2 at once (ray)" in text
    assert r.output.count("to do") == 4
    assert not out.exists() or not any(out.iterdir())
