"""What a user meets first: options that agree across commands, progress in a log, data that identifies a run,
record files with ordinary permissions and strict JSON."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

from fakeworld import scripted_models
from rich.console import Console
from typer.testing import CliRunner

from harness.backends.fake import ScriptedGenerator
from harness.cli import app
from harness.cli.display import Display
from harness.core.io import atomic_write_json
from harness.core.spec import RunSpec
from harness.evaluation.evaluate import evaluate
from harness.runner.data import RunData
from harness.runner.run import run_eval

runner = CliRunner()
DATA = Path(os.environ.get("BENCH_DATA_DIR") or Path(__file__).parent.parent.parent / "shared" / "data")


def test_every_command_takes_results():
    for command in ("eval", "optimize", "run", "leaderboard", "transfer"):
        res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "240"})
        assert "--results" in res.output, command


def test_help_texts_come_from_the_presets():
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "240"})
    text = " ".join(res.output.replace("│", " ").split())
    assert "paper 1024, cpu 128, cpu-0.5b 256, smoke 32" in text and "cpu before" in text and "cpu-0.5b after" in text


def test_progress_lines_when_output_is_not_a_terminal():
    from fakeworld import parity_task

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    task = parity_task(test=40)
    gen, _ = scripted_models()
    with Display(console, interval=0) as display:
        evaluate(task, task.load().test, "Think.", gen, max_new_tokens=8, progress=display.tracker("parity"))
    lines = buf.getvalue().splitlines()
    assert any(line.startswith("parity reasoning: 0/40 examples") for line in lines)
    assert any(line.startswith("parity reasoning: 32/40 examples") and "tok/s" in line and "ETA" in line for line in lines)
    assert any(line.startswith("parity answers: 40/40 examples") and "took" in line for line in lines)


def test_changed_data_is_a_new_run_with_the_new_golds(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"input": f"Is {i} even?", "target": "Yes" if i % 2 == 0 else "No", "split": ("train", "dev", "test")[i % 3]} for i in range(9)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    name = f"custom:{path}"
    gen = ScriptedGenerator(lambda rendered, params, i: "Yes", loglik=lambda r, c: 0.0)

    def run():
        data = RunData()
        spec = RunSpec(kind="eval", task=name, model="fake", data=data.eval_fingerprint(name, "test"), prompt="Think.")
        run_eval(spec, gen, data=data, out=tmp_path / "out")
        return spec

    first = run()
    flipped = [{**r, "target": "No" if r["target"] == "Yes" else "Yes"} for r in rows]
    path.write_text("".join(json.dumps(r) + "\n" for r in flipped))
    second = run()
    assert first.run_id != second.run_id
    golds = [json.loads(line)["gold"] for line in (tmp_path / "out" / second.run_id / "predictions.jsonl").read_text().splitlines()]
    assert golds == [r["target"] for r in flipped if r["split"] == "test"]
    stale = RunData()
    import pytest

    from harness.core.types import BenchError

    with pytest.raises(BenchError, match="changed since this run was specified"):
        stale.check(first)  # the old spec no longer matches the file


def test_records_have_umask_permissions_and_strict_json(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": float("nan"), "b": [float("inf"), 1.5]})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "r.json").stat().st_mode)
    assert mode == 0o640
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and json.loads(text) == {"a": None, "b": [None, 1.5]}


def test_leaderboard_file_gets_umask_permissions(tmp_path):
    from gridworld import write_run

    write_run(tmp_path / "results", method="zs-cot", correct=[True, False])
    old = os.umask(0o022)
    try:
        res = runner.invoke(app, ["leaderboard", "--results", str(tmp_path / "results"), "--format", "html"])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE((tmp_path / "results" / "leaderboard.html").stat().st_mode) == 0o644


def test_out_naming_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["eval", "--tasks", "bbh:navigate", "--limit", "2", "--results", str(blocker / "sub")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "a file is in the way" in " ".join(res.output.split())


def test_unreachable_hub_fails_in_seconds(tmp_path, monkeypatch):
    """No data folder and the hub at a closed local port: one line naming --data-dir, in seconds."""
    import time

    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "BENCH_DATA_DIR"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    res = runner.invoke(app, ["eval", "--tasks", "bbh:navigate", "--limit", "2", "--results", str(tmp_path / "r")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in text
    assert "--data-dir" in text and "BENCH_DATA_DIR" in text and "cannot be reached" in text
    t1 = time.monotonic()
    res = runner.invoke(app, ["eval", "--model", "org/nonexistent-model", "--tasks", "bbh:navigate", "--limit", "2",
                              "--data-dir", str(DATA), "--backend", "hf", "--results", str(tmp_path / "r")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "not in the local hub cache" in text and "cannot be reached" in text
    assert t1 - t0 < 10 and time.monotonic() - t1 < 10
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_editing_a_sidecar_is_a_new_run(tmp_path):
    """How answers are read belongs to what identifies a run: a changed sidecar never returns the old result."""
    path = tmp_path / "qa.jsonl"
    rows = [{"input": f"Capital of country {i}?", "target": f"City{i}", "split": ("train", "dev", "test")[i % 3]}
            for i in range(9)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sidecar = tmp_path / "qa.jsonl.task.json"
    name = f"custom:{path}"
    sidecar.write_text(json.dumps({"answer_format": "free_text"}))
    first = RunData().eval_fingerprint(name, "test")
    sidecar.write_text(json.dumps({"answer_format": "free_text", "answer_regex": "is (\\\\w+)"}))
    assert RunData().eval_fingerprint(name, "test") != first
    assert RunData().eval_fingerprint("bbh:navigate", "test", 3) == RunData().eval_fingerprint("bbh:navigate", "test", 3)
