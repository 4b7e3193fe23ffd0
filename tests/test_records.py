"""The typed run-folder records and their one loader: the committed results read back and written again are the
same bytes, nothing of a record is lost (unknown keys, nulls, key order), damaged files are named, and the
report layer only reads records."""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.core.records import (
    DEFAULT_RESULTS,
    PREDICTIONS,
    SPEC,
    STEPS,
    SUMMARY,
    EvaluationRecord,
    PredictionRecord,
    SpecRecord,
    StepRecord,
    SummaryRecord,
    iter_runs,
    load_run,
    write_run,
)
from harness.core.types import BenchError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DATA = ROOT.parent / "shared" / "data"
FILES = (SPEC, SUMMARY, STEPS, PREDICTIONS)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def copy(tmp_path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(RESULTS, out)
    return out


def test_committed_results_round_trip_byte_for_byte(copy):
    before = snapshot(copy)
    runs = list(iter_runs(copy, finished=False, steps=True, predictions=True))
    assert len(runs) == len([p for p in copy.iterdir() if (p / SPEC).exists()]) > 0
    assert {r.kind for r in runs} == {"optimize", "eval"} and any(r.steps for r in runs)
    for run in runs:
        for name in FILES:
            (run.path / name).unlink(missing_ok=True)  # written again from the records alone
        write_run(run)
    after = snapshot(copy)
    changed = [k for k in before if before[k] != after.get(k)]
    assert not changed and set(after) == set(before), changed[:5]
    checked = [k for k in before if k.endswith((SPEC, SUMMARY, STEPS))]
    assert len(checked) >= 2 * len(runs)


def test_migrate_leaves_current_results_as_they_are(copy):
    before = snapshot(copy)
    res = CliRunner().invoke(app, ["migrate", str(copy), "--data-dir", str(DATA)])
    assert res.exit_code == 0, res.output
    assert "migrated 0 run folder(s)" in res.output
    assert snapshot(copy) == before


def test_typed_attributes_of_a_committed_cell():
    folder = next(p for p in sorted(RESULTS.iterdir()) if p.name.startswith("optimize-greater-"))
    raw = json.loads((folder / SUMMARY).read_text())
    run = load_run(folder, steps=True)
    assert isinstance(run.summary, SummaryRecord) and isinstance(run.test, EvaluationRecord)
    assert run.run_id == folder.name == run.summary.run_id and run.kind == "optimize"
    assert run.summary.test_accuracy == raw["test_accuracy"] and run.prompt == raw["prompt"]
    assert run.test.readings == raw["test"]["readings"] and run.test.n == raw["test"]["n"]
    assert run.summary.correct(raw["primary"]) == dict(zip(raw["per_example"]["ids"],
                                                           (c == "1" for c in raw["per_example"][raw["primary"]])))
    assert run.spec.run_spec.run_id == run.run_id  # the spec's hash is the folder's name
    assert all(isinstance(s, StepRecord) and s.cost for s in run.steps)
    assert "candidates" in run.summary.extra  # a key the schema does not name is kept, not dropped
    eval_run = load_run(next(p for p in sorted(RESULTS.iterdir()) if p.name.startswith("eval-")))
    assert isinstance(eval_run.summary, EvaluationRecord) and eval_run.test is eval_run.summary
    assert eval_run.prompt == eval_run.spec.spec["prompt"] and eval_run.spec.spec["source"]["run"]


def test_nothing_of_a_line_is_lost():
    """Unknown keys, their order, nulls and absent keys survive a read and a write."""
    line = {"schema": 1, "zeta": [1, {"b": 2, "a": None}], "id": "t/1", "gold": None, "input": "ü", "options_correct": True}
    rec = PredictionRecord.from_dict(line)
    assert rec.id == "t/1" and rec.gold is None and rec.reasoning is None and rec.correct("options")
    assert list(rec.to_dict().items()) == list(line.items())  # the order as written, the null kept, no key added
    step = {"schema": 1, "step": 3, "method": "ape", "phase": "score", "rng": [3, [1, 2], None], "state": {"x": 1}}
    assert list(StepRecord.from_dict(step).to_dict()) == list(step)
    assert StepRecord.from_dict(step).logged().to_dict() == {"schema": 1, "step": 3, "method": "ape", "phase": "score"}
    built = PredictionRecord(id="x", gold="A")  # built in code: the set fields, schema first
    assert built.to_dict() == {"schema": 1, "id": "x", "gold": "A"}
    spec = SpecRecord.from_dict({"run_id": "a", "schema": 1, "spec": {"kind": "eval"}})
    moved = dataclasses.replace(spec, run_id="b", migrated_from="a").to_dict()
    assert moved == {"run_id": "b", "schema": 1, "spec": {"kind": "eval"}, "migrated_from": "a"}


def test_damaged_records_are_named(copy):
    folder = next(p for p in sorted(copy.iterdir()) if p.name.startswith("optimize-") and (p / SUMMARY).exists())
    good = (folder / SUMMARY).read_text()
    summary = json.loads(good)
    (folder / SUMMARY).write_text(json.dumps({**summary, "schema": 7}))
    with pytest.raises(BenchError, match=rf"record {folder / SUMMARY} has schema 7, expected 1"):
        load_run(folder)
    del summary["test"]
    (folder / SUMMARY).write_text(json.dumps(summary))
    with pytest.raises(BenchError, match=rf"malformed record {folder / SUMMARY} \(TypeError: .*'test'"):
        load_run(folder)
    (folder / SUMMARY).write_text(good)
    (folder / STEPS).write_text('{"schema": 1, "step": 0}\n{"schema": 1, "ste')
    with pytest.raises(BenchError, match=rf"corrupt record in {folder / STEPS} line 2"):
        load_run(folder, steps=True)


def test_one_default_results_folder(monkeypatch):
    """The CLI and the Python API write the user's runs to the same folder, never into the committed results/."""
    import inspect

    from harness.cli.options import default_results
    from harness.runner.run import run_eval, run_optimize
    from harness.runner.transfer import evaluate_on_model

    assert DEFAULT_RESULTS == Path("bench-results") and DEFAULT_RESULTS.resolve() != RESULTS.resolve()
    for fn in (run_eval, run_optimize, evaluate_on_model):
        assert inspect.signature(fn).parameters["out"].default is DEFAULT_RESULTS
    monkeypatch.delenv("BENCH_RESULTS", raising=False)
    assert default_results() is DEFAULT_RESULTS


def test_reports_only_read_records():
    """harness/reports/ opens no model and runs nothing: it imports neither backends, nor the runner, nor the
    model libraries (model-running transfer work lives in harness/runner/transfer.py)."""
    banned = ("harness.backends", "harness.runner", "harness.lmeval", "torch", "transformers", "vllm", "openai")
    for path in sorted((ROOT / "harness" / "reports").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.startswith(banned)]
            assert not bad, f"{path.name} imports {bad}"
