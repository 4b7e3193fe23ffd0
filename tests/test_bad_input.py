"""Bad input to `bench eval` and `bench optimize`: refused at once, in one line, before any model loads, writing
nothing. The rule every row of `CASES` is held to is `badinput.check`; the other commands' rows are in
test_bad_input_grid.py."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from badinput import (
    Case,
    World,
    check,
    eval_,
    optimize,
    read_only,
    runner,
    unreachable,
    world_fixture,  # noqa: F401  (the `world` fixture of every case)
)

from harness.cli import app


def folder_task(w: World) -> list[str]:
    w.folder("qa.jsonl")
    return eval_("--tasks", f"custom:{w.tmp / 'qa.jsonl'}")(w)


YES_NO = [{"input": f"Is {i} even?", "target": "Yes" if i % 2 == 0 else "No"} for i in range(10)]


def contradicting_sidecar(w: World) -> list[str]:
    return eval_("--tasks", w.custom(YES_NO, {"answer_format": "integer"}))(w)


def only_train_rows(w: World) -> list[str]:
    return eval_("--tasks", w.custom([{**r, "split": "train"} for r in YES_NO[:4]] + [{**YES_NO[4], "split": "dev"}]))(w)


CASES = [
    # ------------------------------------------------------------------ bench eval
    Case("eval: preset typo", eval_("--preset", "smok"), ("unknown preset 'smok'", "did you mean 'smoke'")),
    Case("eval: dtype float64", eval_("--dtype", "float64"), ("'float64' is not one of", "'float32'"), usage="--dtype"),
    Case("eval: unknown split", eval_("--split", "validation"), ("'validation' is not one of 'train', 'dev', 'test'",),
         usage="--split"),
    Case("eval: unknown task", eval_("--tasks", "bbh:navigat"), ("unknown task 'bbh:navigat'", "did you mean 'bbh:navigate'")),
    Case("eval: unknown task among known", eval_("--tasks", "bbh:navigate,gsm9k"), ("unknown task 'gsm9k'", "bench tasks")),
    Case("eval: no task", eval_("--tasks", ","), ("no task given", "bench tasks")),
    Case("eval: unknown model", eval_("--model", "smollm3-135m"), ("unknown model 'smollm3-135m'", "bench models")),
    Case("eval: model folder without config.json", lambda w: eval_("--model", str(w.folder("not-a-model")))(w),
         ("no config.json", "point at the folder")),
    Case("eval: unknown reading", eval_("--reading", "greedier"), ("'greedier' is not one of 'greedy', 'options'",),
         usage="--reading"),
    Case("eval: unknown backend", eval_("--backend", "vlm"), ("'vlm' is not one of 'hf', 'vllm'",), usage="--backend"),
    Case("eval: openai backend without a URL", eval_("--backend", "openai"), ("--backend openai needs --base-url",)),
    Case("eval: unknown engine", eval_("--engine", "lmeval"), ("'lmeval' is not one of 'harness', 'lm-eval'",), usage="--engine"),
    Case("eval: unknown position", eval_("--position", "sideways"), usage="--position"),
    Case("eval: --limit 0", eval_("--limit", "0"), usage="--limit"),
    Case("eval: negative --limit", eval_("--limit", "-3"), usage="--limit"),
    Case("eval: --max-new-tokens 0", eval_("--max-new-tokens", "0"), usage="--max-new-tokens"),
    Case("eval: --batch-size 0", eval_("--batch-size", "0"), usage="--batch-size"),
    Case("eval: --threads 0", eval_("--threads", "0"), usage="--threads"),
    Case("eval: --limit not a number", eval_("--limit", "ten"), usage="--limit"),
    Case("eval: negative --seed", eval_("--seed", "-1"), ("--seed must be a non-negative integer (got -1)",)),
    Case("eval: negative --split-seed", eval_("--split-seed", "-2"), ("--split-seed must be a non-negative integer (got -2)",)),
    Case("eval: --results is an existing file", lambda w: eval_("--results", str(w.file()))(w),
         ("a file is in the way", "choose another folder")),
    Case("eval: --results under a file", lambda w: eval_("--results", str(w.file() / "sub"))(w),
         ("a file is in the way", "choose another folder")),
    Case("eval: read-only results folder", eval_(), ("is not writable", "Read-only file system", "choose another folder"),
         setup=read_only(results=True)),
    Case("eval: full disk", eval_(), ("No space left on device", "free some disk space or choose another folder"),
         setup=lambda w: w.fail_replace(errno.ENOSPC)),
    Case("eval: BENCH_CACHE_DIR names a file", eval_(), ("a file is in the way", "BENCH_CACHE_DIR"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_CACHE_DIR", str(w.file("cache-file")))),
    Case("eval: read-only cache folder", eval_("--no-cache"), ("cache folder", "is not writable", "BENCH_CACHE_DIR"),
         setup=read_only(results=False)),
    Case("eval: empty data folder", lambda w: eval_("--data-dir", str(w.folder("empty")))(w),
         ("no data for bbh:navigate", "does not exist", "--data-dir")),
    Case("eval: data folder does not exist", eval_("--data-dir", "{t}/nowhere"), ("no data for bbh:navigate", "--data-dir")),
    Case("eval: malformed data file", lambda w: eval_("--data-dir", str(w.bbh_data("navigate", '{"examples": [')))(w),
         ("malformed data file", "navigate.json")),
    Case("eval: data file of the wrong shape", lambda w: eval_("--data-dir", str(w.bbh_data("navigate", '{"rows": 3}')))(w),
         ("malformed data file", 'expected {"examples"')),
    Case("eval: empty split", only_train_rows, ("test split is empty",)),
    Case("eval: custom task file missing", eval_("--tasks", "custom:{t}/missing.jsonl"), ("missing.jsonl does not exist",)),
    Case("eval: custom task path is a folder", folder_task, ("custom task file", "qa.jsonl is a folder", "name a .jsonl file")),
    Case("eval: sidecar format contradicts the golds", contradicting_sidecar,
         ("target 'Yes' is not an integer", "qa.jsonl.task.json", '"answer_format": "yes_no"')),
    Case("eval: malformed custom line", lambda w: eval_("--tasks", "custom:" + str(w.file("bad.jsonl", "{oops}")))(w),
         ("malformed data file", "bad.jsonl line 1")),
    Case("eval: hub unreachable (no data folder)", eval_(), ("cannot be reached", "--data-dir", "BENCH_DATA_DIR"),
         setup=unreachable),
    Case("eval: hub model id unreachable", eval_("--model", "org/nonexistent-model"),
         ("not in the local hub cache", "cannot be reached", "local model folder")),
    Case("eval: BENCH_PROGRESS_SECONDS=abc", eval_(), ("BENCH_PROGRESS_SECONDS='abc' is not a number of seconds", "e.g. 15"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_PROGRESS_SECONDS", "abc")),
    Case("eval: --seed in Arabic-Indic digits", eval_("--seed", "٣"), usage="--seed"),
    Case("eval: HF_ENDPOINT with a port that is no number", eval_("--model", "org/nonexistent-model"),
         ("HF_ENDPOINT='http://127.0.0.1:abc' is not an http(s) URL", "https://huggingface.co"),
         setup=lambda w: w.monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:abc")),
    Case("eval: HF_HUB_OFFLINE neither on nor off", eval_("--model", "org/nonexistent-model"),
         ("HF_HUB_OFFLINE='maybe' is neither on nor off", "1 or 0"),
         setup=lambda w: w.monkeypatch.setenv("HF_HUB_OFFLINE", "maybe")),
    Case("eval: BENCH_VLLM_EAGER neither on nor off", eval_("--backend", "vllm"), ("BENCH_VLLM_EAGER='maybe'", "1 or 0"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_VLLM_EAGER", "maybe")),
    Case("eval: VLLM_CPU_KVCACHE_SPACE with a unit", eval_("--backend", "vllm"),
         ("VLLM_CPU_KVCACHE_SPACE='2G' is not a whole number of GiB", "e.g. 2"),
         setup=lambda w: w.monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2G")),
    Case("eval: OPENAI_API_KEY over two lines", eval_("--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"),
         ("OPENAI_API_KEY holds whitespace or control characters", "on one line"),
         setup=lambda w: w.monkeypatch.setenv("OPENAI_API_KEY", "sk-abc\ndef")),
    Case("eval: BENCH_BACKEND unknown", eval_(), ("'tgi' is not one of", "BENCH_BACKEND"), usage="--backend",
         setup=lambda w: w.monkeypatch.setenv("BENCH_BACKEND", "tgi")),
    # ------------------------------------------------------------------ bench optimize
    Case("optimize: unknown method", optimize("--method", "greatr"), ("unknown method 'greatr'", "did you mean 'greater'")),
    Case("optimize: preset typo", optimize("--preset", "smok"), ("unknown preset 'smok'", "did you mean 'smoke'")),
    Case("optimize: --budget -5", optimize("--budget", "-5"), ("--budget must be a positive number", "-5")),
    Case("optimize: --budget 0", optimize("--budget", "0"), ("--budget must be a positive number",)),
    Case("optimize: unknown model", optimize("--model", "smollm3-135m"), ("unknown model 'smollm3-135m'", "did you mean")),
    Case("optimize: unknown optimizer model", optimize("--method", "ape", "--optimizer-model", "gpt-x"), ("unknown model 'gpt-x'",)),
    Case("optimize: --threads 0", optimize("--threads", "0"), usage="--threads"),
    Case("optimize: unknown task", optimize("--task", "bbh:nope"), ("unknown task 'bbh:nope'",)),
    Case("optimize: group as the task", optimize("--task", "bbh21"), ("is a group of tasks",)),
    Case("optimize: dtype float64", optimize("--dtype", "float64"), ("'float64' is not one of",), usage="--dtype"),
    Case("optimize: negative --seed", optimize("--seed", "-1"), ("--seed must be a non-negative integer (got -1)",)),
    Case("optimize: --max-new-tokens 0", optimize("--max-new-tokens", "0"), usage="--max-new-tokens"),
    Case("optimize: --limit 0", optimize("--limit", "0"), usage="--limit"),
    Case("optimize: unknown reading", optimize("--reading", "best"), ("'best' is not one of",), usage="--reading"),
    Case("optimize: openai optimizer without a URL", optimize("--optimizer-backend", "openai", "--optimizer-model", "gpt-x"),
         ("needs --optimizer-model NAME and --base-url URL",)),
    Case("optimize: unknown optimizer backend", optimize("--optimizer-backend", "tgi", "--optimizer-model", "gpt-x"),
         ("'tgi' is not one of 'hf', 'vllm', 'openai'",), usage="--optimizer-backend"),
    Case("optimize: results is a file", lambda w: optimize("--results", str(w.file()))(w), ("a file is in the way",)),
    Case("optimize: full disk", optimize(), ("No space left on device", "free some disk space"),
         setup=lambda w: w.fail_replace(errno.ENOSPC)),
    Case("optimize: BENCH_PROGRESS_SECONDS=-1", optimize(), ("BENCH_PROGRESS_SECONDS='-1'", "e.g. 15"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_PROGRESS_SECONDS", "-1")),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_bad_input_is_one_line_before_any_model_loads(case, world):
    check(case, *world)


# ------------------------------------------------------------------------------------------ faults after the checks


@pytest.mark.parametrize("record", ["predictions.jsonl", "summary.json"])
def test_disk_full_while_writing_records_is_one_line_and_leaves_no_torn_file(world, record):
    """The disk fills up after the checks passed and the model ran: one line naming the file and the fix, no
    temporary file, and no folder that looks finished (a folder left with predictions but no summary is redone)."""
    import harness.runner.pool
    from harness.backends.fake import ScriptedGenerator

    w, system_tmp = world
    gen = ScriptedGenerator(lambda rendered, params, i: "Yes, step by step.", loglik=lambda r, c: 0.0)
    w.monkeypatch.setattr(harness.runner.pool.ModelPool, "generator", lambda self, *a, **kw: gen)
    real = os.replace

    def replace(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
        if Path(dst).name == record:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **kw)

    w.monkeypatch.setattr(os, "replace", replace)
    res = runner.invoke(app, eval_()(w), env={"COLUMNS": "2000"})
    lines = [ln for ln in res.output.splitlines() if ln.strip()]  # the progress of the evaluation, then the error
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert [ln for ln in lines if "error" in ln.lower()] == lines[-1:], res.output
    assert lines[-1].startswith("error: cannot write ") and record in lines[-1], res.output
    assert "No space left on device; free some disk space or choose another folder" in lines[-1]
    leftovers = [p for p in w.results.rglob("*") if p.is_file()]
    assert not any(p.name.startswith(".") for p in leftovers), leftovers  # no temporary file
    assert not any(p.name == "summary.json" for p in leftovers)  # nothing looks finished
    assert not list(system_tmp.iterdir())
    w.monkeypatch.setattr(os, "replace", real)  # space again: the same command finishes the run
    res = runner.invoke(app, eval_()(w))
    assert res.exit_code == 0, res.output
    assert len([p for p in w.results.iterdir() if (p / "summary.json").exists()]) == 1
