"""Logs a person can read: result tables printed whole when output is not a terminal, and third-party progress
bars kept out of logs (the harness's own progress lines stay)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from typer.testing import CliRunner

import harness.runner.pool
from harness.backends.fake import ScriptedGenerator
from harness.cli import app
from harness.cli.options import QUIET_PROGRESS_ENV, quiet_progress_bars

LONG = "greater_bench_optimized_instruction_inventory_check_with_a_long_name"


def test_bench_eval_piped_prints_every_header_and_the_whole_task_name(tmp_path, monkeypatch):
    rows = [{"input": f"Is {i} even? Answer Yes or No.", "target": "Yes" if i % 2 == 0 else "No"} for i in range(10)]
    data = tmp_path / f"{LONG}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = ScriptedGenerator(lambda rendered, params, i: "Let us see. Yes", loglik=lambda r, c: 0.0)
    monkeypatch.setattr(harness.runner.pool.ModelPool, "generator", lambda self, *a, **kw: gen)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "80")  # what a log file or a pipe gets from rich
    res = CliRunner().invoke(app, ["eval", "--tasks", f"custom:{data}", "--limit", "3", "--no-cache", "--preset", "smoke",
                                   "--results", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    header = next(ln for ln in res.output.splitlines() if "task" in ln and "greedy" in ln)
    for name in ("task", "n", "greedy", "options", "fallback", "invalid greedy", "reasoning tokens"):
        assert name in header, header
    assert f"custom:{LONG}" in res.output
    assert "…" not in res.output and len(header) > 80


def test_third_party_progress_bars_are_quiet_in_a_log_and_kept_on_a_terminal(monkeypatch):
    for key in QUIET_PROGRESS_ENV:
        monkeypatch.setenv(key, "0")  # restored after the test, whatever the switch sets
        monkeypatch.delenv(key)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert quiet_progress_bars(Tty()) is False and not any(k in os.environ for k in QUIET_PROGRESS_ENV)
    assert quiet_progress_bars(io.StringIO()) is True
    assert all(os.environ[k] == v for k, v in QUIET_PROGRESS_ENV.items())
    # a child (model conversion, vLLM, a grid's model process) inherits the switch: tqdm draws nothing
    code = "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='converting'): pass\nprint('done')"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert child.stdout.strip() == "done" and "converting" not in child.stderr, child.stderr
    unquiet = {k: v for k, v in os.environ.items() if k not in QUIET_PROGRESS_ENV}
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=unquiet, timeout=60)
    assert "converting" in child.stderr  # the same bar without the switch: the check above can fail


def test_bench_eval_loads_the_model_once_for_many_tasks_and_not_at_all_when_every_run_is_finished(tmp_path, monkeypatch):
    tasks = []
    for name in ("first", "second"):
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(json.dumps({"input": f"Is {i} even?", "target": "Yes"}) + "\n" for i in range(4)))
        tasks.append(f"custom:{data}")
    gen = ScriptedGenerator(lambda rendered, params, i: "Yes", loglik=lambda r, c: 0.0)
    opened = []

    def generator(self, model, **kw):
        opened.append(model)
        self.loads.append((model, kw.get("backend"), kw.get("dtype")))
        return gen

    monkeypatch.setattr(harness.runner.pool.ModelPool, "generator", generator)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    args = ["eval", "--tasks", ",".join(tasks), "--no-cache", "--preset", "smoke", "--backend", "hf",
            "--results", str(tmp_path / "r")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("loading smollm2-135m") == 1, res.output
    assert len(opened) == 2  # asked once per task, loaded once by the pool
    opened.clear()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert opened == [] and "loading" not in again.output  # finished runs are read back, no model opened
    for name in ("first.jsonl", "second.jsonl"):  # the same table, from the stored summaries
        row = next(ln for ln in res.output.splitlines() if name in ln and "│" in ln)  # the table row, not progress
        assert row in again.output.splitlines()
