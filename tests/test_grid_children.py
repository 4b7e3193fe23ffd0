"""The grid with a child process per model (as a vLLM grid runs it): the same records as in one process, a failing
or dying child named in one line, keep-going, a crashed child's resume, and `--isolate`.

Real child processes (`python -m harness.runner.child`), as a vLLM grid runs them: the scripted task models of gridworld
opened through an importable opener, the grid task as a custom JSONL task, real methods (zs-cot, opro's smoke
preset: three logged steps). Each child start costs an interpreter start-up (a second or two).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from gridworld import child_setup, opened, snapshot, write_task_file
from typer.testing import CliRunner

import harness.runner.grid
from harness.core.types import BenchError
from harness.runner.cells import GridSettings, resolve_grid
from harness.runner.grid import run_grid
from harness.runner.pool import ModelPool

OPENER = "gridworld:open_task_model"


@pytest.fixture
def children(tmp_path, monkeypatch):
    """The grid (backend vllm: a child per model unless `isolate` says no) and the models it opened (pid,
    model); failed children's logs in tmp_path."""
    log = child_setup(monkeypatch, tmp_path)
    task = write_task_file(tmp_path)

    def grid(out, *, models=("fake-a", "fake-b"), methods=("zs-cot", "opro"), opener=OPENER, **kw):
        settings = GridSettings(preset="smoke", backend="vllm")
        return run_grid(resolve_grid(list(methods), [task], list(models), [0], settings), out=out,
                        pool=ModelPool(opener=opener), **kw)

    def newly_opened() -> list[tuple[int, str]]:  # the models opened since the last call
        seen = opened(log)
        log.unlink(missing_ok=True)
        return seen

    return grid, newly_opened


def without_wall_times(record):
    record = json.loads(json.dumps(record))
    record.pop("ran_on", None)  # the process it ran in
    record["cost"].pop("wall_seconds")
    record["test"].pop("seconds")
    if "evaluation" in record:
        record["evaluation"].pop("seconds")
    return record


def test_each_model_in_its_own_child_equals_the_in_process_run(tmp_path, children, monkeypatch):
    grid, newly_opened = children
    events, said = [], []
    isolated = grid(tmp_path / "iso", on_status=events.append, progress=said.append)
    loads = newly_opened()
    assert sorted(m for _, m in loads) == ["fake-a", "fake-b"]  # each model loaded once ...
    assert all(pid != os.getpid() for pid, _ in loads) and len({pid for pid, _ in loads}) == 2  # ... each in a child
    assert [(e.event, e.cell.model if e.cell else None, e.done, e.running, e.left) for e in events] == [
        ("start", "fake-a", 0, 1, 3), ("finish", "fake-a", 1, 0, 3), ("start", "fake-a", 1, 1, 2), ("finish", "fake-a", 2, 0, 2),
        ("start", "fake-b", 2, 1, 1), ("finish", "fake-b", 3, 0, 1), ("start", "fake-b", 3, 1, 0), ("finish", "fake-b", 4, 0, 0),
        ("end", None, 4, 0, 0),
    ]
    assert events[0].eta_seconds is None and events[2].eta_seconds is not None  # ETA from the forwarded events
    model_of = {e.record["run_id"]: e.record["model"] for e in events if e.event == "finish"}
    assert [model_of[e.run] for e in said if e.text.startswith("opro step")] == ["fake-a"] * 2 + ["fake-b"] * 2

    reference = grid(tmp_path / "ref", isolate=False)
    assert sorted(newly_opened()) == [(os.getpid(), "fake-a"), (os.getpid(), "fake-b")]
    assert [without_wall_times(r) for r in isolated] == [without_wall_times(r) for r in reference]
    assert snapshot(tmp_path / "iso") == snapshot(tmp_path / "ref")  # same steps, predictions, summaries

    def no_child(*a, **kw):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(harness.runner.grid, "run_in_child", no_child)
    again = []
    assert grid(tmp_path / "iso", isolate=True, on_status=again.append) == isolated
    assert newly_opened() == [] and [e.event for e in again] == ["skip"] * 4 + ["end"]


def test_a_failing_child_names_the_model_and_its_log(tmp_path, children):
    grid, newly_opened = children
    with pytest.raises(BenchError, match=r"^running the cells of broken-c failed in its child process \(exit code 1\): "
                                         r"RuntimeError: no weights for broken-c \(log \S+\.log\); fix that and re-run, "
                                         r"finished cells and steps are kept$") as e:
        grid(tmp_path / "out", models=["broken-c", "fake-a"])
    assert "\n" not in str(e.value) and [m for _, m in newly_opened()] == ["broken-c"]  # the grid stopped there
    kept_log = Path(re.search(r"\(log (\S+)\)", str(e.value)).group(1))
    assert kept_log.parent == tmp_path and "Traceback" in kept_log.read_text()

    with pytest.raises(BenchError, match="cannot use an opener function"):
        grid(tmp_path / "out", opener=lambda *a: None)  # before any model loads
    assert newly_opened() == []


def test_keep_going_goes_on_with_the_next_model(tmp_path, children):
    grid, newly_opened = children
    events = []
    records = grid(tmp_path / "out", models=["broken-c", "dies-d", "fake-a"], keep_going=True, on_status=events.append)
    assert [m for _, m in newly_opened()] == ["broken-c", "broken-c", "dies-d", "fake-a"]
    # a cell that fails inside a child is recorded as in this process; the child goes on with the next cell
    assert [r["error"] for r in records[:2]] == ["RuntimeError: no weights for broken-c"] * 2
    # a child that dies: its unfinished cells get its one line; the grid goes on with the next model
    assert records[2]["error"] == records[3]["error"]
    assert re.fullmatch(r"running the cells of dies-d failed in its child process \(killed by signal 9\): no output "
                        r"\(log \S+\.log\); fix that and re-run, finished cells and steps are kept", records[2]["error"])
    assert [r["model"] for r in records[4:]] == ["fake-a", "fake-a"]
    assert [e.event for e in events] == ["start", "fail"] * 2 + ["start", "fail", "fail"] + ["start", "finish"] * 2 + ["end"]
    assert events[-1].done == 2 and events[-1].failed == 4


def test_a_crashed_child_loses_only_the_step_in_progress(tmp_path, children, monkeypatch):
    grid, _ = children
    reference = grid(tmp_path / "ref", models=["fake-a"], isolate=False)
    steps = tmp_path / "out" / reference[1]["run_id"] / "steps.jsonl"
    monkeypatch.setenv("GRIDWORLD_CRASH_ON", "10 halves, so the answer is Yes.")  # opro's candidate of step 2
    with pytest.raises(BenchError, match=r"running the cells of fake-a failed .*Crash: simulated crash"):
        grid(tmp_path / "out", models=["fake-a"])
    assert (tmp_path / "out" / reference[0]["run_id"] / "summary.json").exists()  # zs-cot finished
    assert [json.loads(line)["step"] for line in steps.read_text().splitlines()] == [0, 1]  # step 2 was in progress

    monkeypatch.delenv("GRIDWORLD_CRASH_ON")
    events = []
    grid(tmp_path / "out", models=["fake-a"], on_status=events.append)
    assert [e.event for e in events] == ["skip", "start", "finish", "end"]
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "ref")


def test_cli_isolate_option(tmp_path, monkeypatch):
    from harness.cli import app

    seen = []
    monkeypatch.setattr(harness.runner.grid, "run_grid", lambda *a, **kw: seen.append(kw["isolate"]) or [])
    for flag, want in (([], None), (["--isolate"], True), (["--no-isolate"], False)):
        res = CliRunner().invoke(app, ["run", "--methods", "zs-cot", "--backend", "hf", "--out", str(tmp_path), *flag])
        assert res.exit_code == 0, res.output
        assert seen[-1] is want
