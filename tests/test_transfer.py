"""`bench transfer` with each target model in its own child process (as the vLLM backend needs): real child
processes (`python -m harness.runner.child`) with the scripted task models of gridworld, opened through
an importable opener. Each child start costs an interpreter start-up (a second or two)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from gridworld import child_setup, opened, write_run, write_task_file
from typer.testing import CliRunner

import harness.runner.transfer
from harness.core.types import BenchError
from harness.reports.transfer import transfer_report
from harness.runner.data import RunData
from harness.runner.pool import PoolSettings
from harness.runner.transfer import TransferRun, needs_own_process, run_transfer, source_runs, transfer_plan

OPENER = "gridworld:open_task_model"
SCRIPTED = PoolSettings(opener=OPENER)  # the scripted task models, importable by a child process
GOOD, WEAK = "Be good and check each step.", "Answer now."
TARGETS = ["fake-a", "fake-b"]


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Four optimize cells on a backend that owns its process; tests/ importable in children; a log of
    every model opened (pid, model)."""
    log = child_setup(monkeypatch, tmp_path)
    task = write_task_file(tmp_path)
    results = tmp_path / "results"
    for s in (0, 1):
        write_run(results, method="greater", task=task, model="fake-a", seed=s, correct=[1, 0], prompt=GOOD, backend="vllm")
        write_run(results, method="greater", task=task, model="fake-b", seed=s, correct=[1, 0, 0, 0], prompt=WEAK,
                  backend="vllm")
    return results, log


def transfer(results: Path, targets: list[str], **kw):
    """What `bench transfer` does: the runner scores the prompts, then the report reads the matrices."""
    done = run_transfer(results, targets, **kw)
    return transfer_report(results, done.sources, done.models, report_dir=kw.get("report_dir"))


def finished_evals(results: Path) -> dict[str, str]:
    return {p.name: (p / "predictions.jsonl").read_text() for p in results.glob("eval-*") if (p / "summary.json").exists()}


def test_which_backends_get_a_child_process():
    assert not needs_own_process("hf") and not needs_own_process("openai") and not needs_own_process("fake")
    assert needs_own_process("vllm") and needs_own_process("some-new-engine")


def test_each_target_in_its_own_child_equals_the_in_process_path(tmp_path, world):
    results, log = world
    in_process = tmp_path / "in-process"
    shutil.copytree(results, in_process)

    ticks: list[tuple[str, int, int]] = []
    isolated = transfer(results, TARGETS, settings=SCRIPTED,  # auto: vllm
                        progress=lambda e: ticks.append((e.phase, e.done, e.total)))
    loads = opened(log)
    assert sorted(m for _, m in loads) == TARGETS  # each target model loaded once ...
    assert all(pid != os.getpid() for pid, _ in loads)  # ... never in this process ...
    assert len({pid for pid, _ in loads}) == 2  # ... each in its own child
    assert ticks == [("fake-a", 1, 2), ("fake-a", 2, 2), ("fake-b", 1, 2), ("fake-b", 2, 2)]

    log.unlink()
    reference = transfer(in_process, TARGETS, settings=SCRIPTED, isolate=False)
    assert sorted(m for _, m in opened(log)) == TARGETS and {pid for pid, _ in opened(log)} == {os.getpid()}
    assert isolated.keys() == reference.keys() == {("cpu", "greater")}
    assert isolated[("cpu", "greater")].equals(reference[("cpu", "greater")])
    assert finished_evals(results) == finished_evals(in_process) and len(finished_evals(results)) == 4

    log.unlink()  # everything finished: read back, no child started, no model opened
    again = transfer(results, TARGETS, settings=SCRIPTED, isolate=True)
    assert opened(log) == [] and again[("cpu", "greater")].equals(isolated[("cpu", "greater")])


def test_a_failing_child_names_the_model_and_its_last_error_line(world):
    results, log = world
    with pytest.raises(BenchError, match=r"evaluating on broken-c failed in its child process \(exit code 1\): "
                                         r"RuntimeError: no weights for broken-c \(log .*\.log\); fix that and re-run") as e:
        run_transfer(results, ["broken-c"], settings=SCRIPTED)
    assert "\n" not in str(e.value) and opened(log)[0][1] == "broken-c" and opened(log)[0][0] != os.getpid()
    kept_log = Path(re.search(r"\(log (\S+)\)", str(e.value)).group(1))
    assert "Traceback" in kept_log.read_text()  # the child's whole error output is kept

    with pytest.raises(BenchError, match="cannot use an opener function"):
        run_transfer(results, ["fake-a"], settings=PoolSettings(opener=lambda *a: None), isolate=True)


def test_a_crashed_child_loses_only_the_evaluation_in_progress(world, monkeypatch):
    results, _ = world
    specs = transfer_plan(source_runs(results), ["fake-c"], RunData())["fake-c"]
    k = next(i for i, s in enumerate(specs) if s.prompt != specs[0].prompt)  # the first of the other prompt
    monkeypatch.setenv("GRIDWORLD_CRASH_ON", specs[k].prompt)
    with pytest.raises(BenchError, match=r"evaluating on fake-c failed in its child process .*simulated crash"):
        run_transfer(results, ["fake-c"], settings=SCRIPTED)
    kept = finished_evals(results)
    assert sorted(kept) == sorted(s.run_id for s in specs[:k]) and k > 0  # the ones before the crash are kept

    monkeypatch.delenv("GRIDWORLD_CRASH_ON")
    run_transfer(results, ["fake-c"], settings=SCRIPTED)
    done = finished_evals(results)
    assert len(done) == 4 and all(done[i] == kept[i] for i in kept)
    assert json.loads((results / specs[k].run_id / "summary.json").read_text())["model"] == "fake-c"


def test_cli_isolate_option(tmp_path, monkeypatch):
    from harness.cli import app

    seen = []
    monkeypatch.setattr(harness.runner.transfer, "run_transfer", lambda *a, **kw: seen.append(kw["isolate"]) or TransferRun((), ()))
    for flag, want in (([], None), (["--isolate"], True), (["--no-isolate"], False)):
        res = CliRunner().invoke(app, ["transfer", "--eval-models", "fake-a", "--results", str(tmp_path), *flag])
        assert res.exit_code == 0, res.output
        assert seen[-1] is want


def test_backend_override_changes_only_the_evaluations_backend(world):
    results, _ = world
    sources = source_runs(results)
    own = transfer_plan(sources, ["fake-c"], RunData())["fake-c"]
    over = transfer_plan(sources, ["fake-c"], RunData(), backend="hf")["fake-c"]
    assert {s.backend for s in own} == {src.spec.backend for src in sources} == {"vllm"}
    assert {s.backend for s in over} == {"hf"}
    # everything else of the evaluation is the source's: only the backend (and so the run id) differs
    for a, b in zip(own, over):
        assert (a.prompt, a.task, a.position, a.max_new_tokens, a.dtype) == (b.prompt, b.task, b.position, b.max_new_tokens, b.dtype)
        assert a.run_id != b.run_id


def test_device_threads_and_batch_size_reach_each_targets_model_pool(world, monkeypatch):
    import harness.runner.transfer as transfer_mod

    results, _ = world
    settings = PoolSettings(opener=OPENER, device="cpu", threads=1, batch_size=3)
    pools = []
    real_pool = transfer_mod.ModelPool

    def recording_pool(s=None, **kw):
        pool = real_pool(s, **kw)
        pools.append(pool.settings)
        return pool

    monkeypatch.setattr(transfer_mod, "ModelPool", recording_pool)
    run_transfer(results, ["fake-c"], isolate=False, settings=settings)
    assert pools == [settings]

    jobs = []  # the child's job carries the same settings, and the child hands them to its pool
    monkeypatch.setattr(transfer_mod, "run_in_child", lambda work, job, **kw: jobs.append(job))
    run_transfer(results, ["fake-d"], isolate=True, settings=settings)
    assert jobs[0]["settings"] == settings.for_child()
    transfer_mod.evaluate_job(json.loads(json.dumps(jobs[0])), send=lambda msg: None)
    assert pools[-1] == settings and len(finished_evals(results)) == 8


def test_cli_passes_device_threads_and_batch_size(tmp_path, monkeypatch):
    from harness.cli import app

    seen = []
    monkeypatch.setattr(harness.runner.transfer, "run_transfer", lambda *a, **kw: seen.append(kw["settings"]) or TransferRun((), ()))
    args = ["transfer", "--eval-models", "fake-a", "--results", str(tmp_path)]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert seen[-1] == PoolSettings(threads=None, batch_size=8, device=None)
    res = CliRunner().invoke(app, [*args, "--device", "cuda:1", "--threads", "2", "--batch-size", "16", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert seen[-1] == PoolSettings(cache=False, threads=2, batch_size=16, device="cuda:1")


def test_seeds_filter_keeps_only_those_cells_prompts(world, monkeypatch):
    results, _ = world
    assert {s.spec.seed for s in source_runs(results)} == {0, 1}
    only = source_runs(results, seeds=[1])
    assert len(only) == 2 and {s.spec.seed for s in only} == {1}
    done = run_transfer(results, ["fake-c"], settings=SCRIPTED, seeds=[1], isolate=False)
    assert sorted(done.sources) == sorted(s.spec.run_id for s in only)
    assert len(finished_evals(results)) == 2  # seed 0's prompts were not scored

    from harness.cli import app

    seen = []
    monkeypatch.setattr(harness.runner.transfer, "run_transfer", lambda *a, **kw: seen.append(kw["seeds"]) or TransferRun((), ()))
    for flag, want in (([], None), (["--seeds", "0-1"], [0, 1]), (["--seeds", "2"], [2])):
        res = CliRunner().invoke(app, ["transfer", "--eval-models", "fake-a", "--results", str(results), *flag])
        assert res.exit_code == 0, res.output
        assert seen[-1] == want
    res = CliRunner().invoke(app, ["transfer", "--eval-models", "fake-a", "--results", str(results), "--seeds", "x"])
    assert res.exit_code == 2 and "bad seed list" in res.output and len(res.output.strip().splitlines()) == 1


def test_a_dotted_preset_gives_each_method_its_own_matrix_files(tmp_path):
    results, out = tmp_path / "results", tmp_path / "matrices"
    sources = []
    for method, correct in (("ape", [1, 0]), ("greater", [1, 1])):
        src = write_run(results, method=method, model="big", correct=correct, preset="cpu-0.5b", prompt=method)
        write_run(results, method=method, model="small", correct=[0, 1, 1, 1] if method == "ape" else [0, 0, 0, 1],
                  prompt=method, source=src)
        sources.append(src.run_id)
    matrices = transfer_report(results, sources, ["big", "small"], report_dir=out)
    assert set(matrices) == {("cpu-0.5b", "ape"), ("cpu-0.5b", "greater")}
    names = sorted(p.name for p in out.iterdir())
    assert names == ["transfer-cpu-0.5b-ape.csv", "transfer-cpu-0.5b-ape.png", "transfer-cpu-0.5b-greater.csv",
                     "transfer-cpu-0.5b-greater.png", "transfer-per-task.csv"]
    assert (out / "transfer-cpu-0.5b-ape.csv").read_text().splitlines()[1] == "big,0.5,0.75"  # its own matrix
    assert (out / "transfer-cpu-0.5b-greater.csv").read_text().splitlines()[1] == "big,1.0,0.25"


def test_a_filtered_transfer_keeps_the_earlier_transfers_in_the_written_files(tmp_path):
    results, out = tmp_path / "results", tmp_path / "matrices"
    a = write_run(results, method="ape", model="big", correct=[1, 0], prompt="a")
    write_run(results, method="ape", model="small", correct=[0, 1, 1, 1], prompt="a", source=a)
    g = write_run(results, method="greater", model="big", seed=1, correct=[1, 1], prompt="g")
    write_run(results, method="greater", model="small", correct=[0, 0, 0, 1], prompt="g", source=g)
    shown = transfer_report(results, [g.run_id], ["big", "small"], report_dir=out)  # this transfer: greater only
    assert set(shown) == {("cpu", "greater")}
    assert (out / "transfer-cpu-ape.csv").read_text().splitlines()[1] == "big,0.5,0.75"  # kept from before
    per_task = (out / "transfer-per-task.csv").read_text().splitlines()
    assert "cpu,ape,bbh:navigate,big,small,1,0.75" in per_task and "cpu,greater,bbh:navigate,big,small,1,0.25" in per_task
