"""Kill -9 and resume, for real: `bench run` in a subprocess on a tiny random HF model, SIGKILLed at 10 points
spread over its run and resumed each time by running the same command again, ends with the records of an
uninterrupted run (prompts, accuracies, step logs, predictions; wall times, timestamps and pids aside), and every
JSON line it ever leaves parses.

The grid: zs-cot, GReaTer and OPRO (a text baseline) on a small custom yes/no task, preset smoke, one seed,
`--backend hf --threads 1 --no-cache --no-isolate`. Kill points come from progress on disk: each run folder,
each line of its steps.jsonl, its predictions.jsonl and its summary.json is one event; the reference run's
timeline says how many events there are and how long each gap between two events lasts. Kill k waits for its
target event, then sleeps 0%, 50% or 90% of the gap that follows (in the reference), so kills land right after a
step was logged, in the middle of a step, and just before the next record, in optimization and in evaluation.
About a minute on 2 CPU cores, most of it interpreter start-ups (one per resume).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

METHODS = "zs-cot,greater,opro"
KILLS = 10
DELAYS = (0.0, 0.5, 0.9)  # share of the reference's gap after the target event to wait before the kill
VOLATILE = {"wall_seconds", "seconds", "seconds_per_step", "ran_on", "created", "command"}  # time, place, argv


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The saved tiny model, the custom task and the environment of every `bench run` of this module."""
    from gridworld import write_task_file
    from tiny import tiny_model

    root = tmp_path_factory.mktemp("kill-resume")
    model, tok = tiny_model()
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    task = write_task_file(root)
    env = {**os.environ, "BENCH_CACHE_DIR": str(root / "cache"), "BENCH_BACKEND": "hf", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200"}
    env.pop("BENCH_RESULTS", None)

    def command(out: Path) -> list[str]:
        return [sys.executable, "-c", "import sys; from harness.cli import app; sys.exit(app())", "run",
                "--methods", METHODS, "--tasks", task, "--models", str(root / "model"), "--seeds", "0",
                "--preset", "smoke", "--backend", "hf", "--threads", "1", "--no-cache", "--no-isolate",
                "--results", str(out)]

    return root, command, env


# ------------------------------------------------------------------------------------------ progress on disk


def progress(out: Path) -> int:
    """Events so far: run folders, complete lines of steps.jsonl, predictions.jsonl and summary.json files."""
    if not out.is_dir():
        return 0
    n = 0
    for folder in out.iterdir():
        if not folder.is_dir():
            continue
        n += 1
        try:
            n += (folder / "steps.jsonl").read_bytes().count(b"\n")
        except FileNotFoundError:
            pass
        n += (folder / "predictions.jsonl").exists() + (folder / "summary.json").exists()
    return n


def check_lines(out: Path) -> int:
    """Every line of every JSON-lines file parses, but a torn last line of a step log (what a kill during an append
    leaves; the next run drops it). Step numbers run 0, 1, 2, ... (no step logged twice). Returns the torn lines."""
    torn = 0
    for path in sorted(out.glob("*/*.jsonl")):
        data = path.read_bytes()
        lines = data.split(b"\n")
        if lines[-1]:  # no newline at the end
            assert path.name == "steps.jsonl", f"torn line in {path}"
            torn += 1
        rows = [json.loads(line) for line in lines[:-1]]
        if path.name == "steps.jsonl":
            assert [r["step"] for r in rows] == list(range(len(rows))), f"{path}: steps {[r['step'] for r in rows]}"
    for path in out.glob("*/*.json"):
        json.loads(path.read_text())  # written whole (atomically) or not at all
    return torn


def temporary_files(out: Path) -> list[Path]:
    """Hidden files: a record's temporary file that a kill left before its rename (or a write probe)."""
    return sorted([*out.glob(".*"), *out.glob("*/.*")])


def records(out: Path) -> dict[str, Any]:
    """Every run folder's files, parsed, without what differs between two identical runs (times, pids, argv)."""

    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if k not in VOLATILE}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    snap: dict[str, Any] = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        files = {}
        for path in sorted(folder.iterdir()):
            text = path.read_text()
            if path.suffix == ".jsonl":
                assert text.endswith("\n"), path
                files[path.name] = [clean(json.loads(line)) for line in text.splitlines()]
            else:
                files[path.name] = clean(json.loads(text))
        snap[folder.name] = files
    return snap


def run_to_end(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
    """Run `cmd` to its end (it must succeed)."""
    with open(log, "ab") as f:
        code = subprocess.run(cmd, env=env, cwd=cwd, stdout=f, stderr=f).returncode
    assert code == 0, log.read_text()[-3000:]


def reference_run(cmd: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, out: Path) -> list[tuple[float, int]]:
    """The uninterrupted run, in this process (its imports are paid for already: the tiny model was built here);
    returns its timeline: (seconds since start, events on disk) at each change."""
    import threading

    from typer.testing import CliRunner

    from harness.cli import app

    for key in ("BENCH_CACHE_DIR", "BENCH_BACKEND", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, env[key])
    timeline = [(0.0, 0)]
    finished = threading.Event()

    def watch() -> None:
        t0 = time.monotonic()
        while not finished.is_set():
            p = progress(out)
            if p != timeline[-1][1]:
                timeline.append((time.monotonic() - t0, p))
            time.sleep(0.002)
        timeline.append((time.monotonic() - t0, progress(out)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        res = CliRunner().invoke(app, cmd[cmd.index("run"):])
    finally:
        finished.set()
        watcher.join()
    assert res.exit_code == 0, res.output
    return timeline


def run_until(cmd: list[str], env: dict[str, str], cwd: Path, log: Path, out: Path, target: int, delay: float) -> float:
    """Start `cmd`, wait until `target` events are on disk, wait `delay` seconds more, SIGKILL it."""
    t0 = time.monotonic()
    with open(log, "ab") as f:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=f)
        try:
            while progress(out) < target:
                assert proc.poll() is None, f"the run ended (code {proc.returncode}) before event {target}:\n" + \
                    log.read_text()[-3000:]
                assert time.monotonic() - t0 < 120, f"no event {target} after 120 s"
                time.sleep(0.002)
            time.sleep(delay)
            assert proc.poll() is None, f"the run ended before the kill after event {target}"
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return time.monotonic() - t0


def test_killed_ten_times_and_resumed_equals_an_uninterrupted_run(grid, tmp_path, monkeypatch):
    root, command, env = grid
    t_start = time.monotonic()
    ref, out = tmp_path / "ref", tmp_path / "killed"
    log = tmp_path / "bench.log"
    timeline = reference_run(command(ref), env, monkeypatch, ref)
    total = timeline[-1][1]
    assert total >= KILLS + 3, timeline
    assert check_lines(ref) == 0
    first = {p: t for t, p in reversed(timeline)}  # when each event count was first seen
    gaps = {p: first.get(p + 1, t) - t for p, t in first.items()}  # how long the run stays at p events

    kills: list[dict[str, Any]] = []
    torn = left = 0
    done = 0
    for k in range(KILLS):
        # targets spread evenly over events 1 .. total-4, each beyond the progress the last kill left on disk (the
        # slack: kills that land late on a busy machine still leave events to kill at; a late one may come after
        # the final record, while the process prints its table)
        target = max(1 + round((total - 5) * k / (KILLS - 1)), done + 1)
        assert target <= total, f"kill {k}: no event left to kill at (done {done} of {total})"
        share = DELAYS[k % len(DELAYS)] if target < total - 1 else 0.0
        delay = share * gaps.get(target, 0.0)
        seconds = run_until(command(out), env, tmp_path, log, out, target, delay)
        torn += check_lines(out)
        left += len(temporary_files(out))
        done = progress(out)
        kills.append({"target": target, "delay": round(delay, 3), "events_on_disk": done, "seconds": round(seconds, 1)})
    run_to_end(command(out), env, tmp_path, log)  # the same command once more: it finishes the grid

    assert check_lines(out) == 0 and temporary_files(out) == []
    assert len(kills) == KILLS and len({k["events_on_disk"] for k in kills}) == KILLS, kills  # 10 distinct points
    got, want = records(out), records(ref)
    assert sorted(got) == sorted(want)
    for run_id in want:
        assert sorted(got[run_id]) == sorted(want[run_id]), run_id
        for name in want[run_id]:
            assert got[run_id][name] == want[run_id][name], f"{run_id}/{name} differs after kills {kills}"
    print(f"\nkill/resume: {KILLS} kills at events {[k['events_on_disk'] for k in kills]} of {total} "
          f"(delays {[k['delay'] for k in kills]} s), {torn} torn step lines and {left} temporary files seen, reference run "
          f"{timeline[-1][0]:.1f} s (first event after {timeline[1][0]:.1f} s), runs killed after "
          f"{[k['seconds'] for k in kills]} s, whole test {time.monotonic() - t_start:.1f} s: records identical")


def test_sigterm_stops_cleanly_and_the_run_resumes(grid, tmp_path, monkeypatch):
    """SIGTERM (a batch scheduler's time limit) is taken like Ctrl-C: one line, exit status 143, no traceback, no
    torn or temporary file; the same command then finishes with the uninterrupted run's records."""
    root, command, env = grid
    ref, out = tmp_path / "ref", tmp_path / "terminated"
    log = tmp_path / "bench.log"
    timeline = reference_run(command(ref), env, monkeypatch, ref)
    total = timeline[-1][1]
    with open(log, "ab") as f:
        proc = subprocess.Popen(command(out), env=env, cwd=tmp_path, stdout=f, stderr=f)
        t0 = time.monotonic()
        while progress(out) < total // 2:
            assert proc.poll() is None and time.monotonic() - t0 < 120, log.read_text()[-3000:]
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 143, text[-3000:]
    assert "terminated (SIGTERM): finished runs are kept" in text and "Traceback" not in text
    assert check_lines(out) == 0 and temporary_files(out) == [] and progress(out) < total
    run_to_end(command(out), env, tmp_path, log)
    assert records(out) == records(ref)


def test_sigterm_is_named_even_when_a_library_re_raises_a_plain_interrupt(capsys):
    """Ray's blocking calls turn the handler's exception into a plain KeyboardInterrupt: the command still
    reports the SIGTERM and exits 143 (Ctrl-C: 130), and restores the previous handler."""
    import typer

    from harness.cli.options import friendly

    @friendly
    def grid() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            raise KeyboardInterrupt() from None  # what a library's cleanup may do

    @friendly
    def ctrl_c() -> None:
        raise KeyboardInterrupt()

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(typer.Exit) as e:
        grid()
    assert e.value.exit_code == 143 and "terminated (SIGTERM)" in capsys.readouterr().err
    with pytest.raises(typer.Exit) as e:
        ctrl_c()
    assert e.value.exit_code == 130 and "interrupted:" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before
