"""Bad input to every `bench` command: refused at once, in one line, before any model loads, writing nothing.

Each row of `CASES` is one bad invocation. The rule every row is held to:
- the exit code is 2 (click usage errors also exit 2);
- no traceback and no exception escaped the command;
- the error is one line: the output has exactly one non-empty line, and it starts with "error:". Options whose
  type or range click checks while parsing (an enum value, a number below its minimum, a missing option) give
  click's usage error instead: then the only non-empty lines are click's "Usage: ..." and "Try '... --help'"
  lines and one "Error: ..." line, and that line names the option;
- the line says what is wrong and what to do (`match`: substrings of it, whitespace collapsed);
- no model was loaded: loading weights (HF `_load`, the GGUF conversion of a packaged alias, a vLLM engine, an
  OpenAI client) raises `ModelLoaded` (escaping as an exception, so a load is a failure with its own message);
- nothing was half-written: every file under the test's folder is as it was (new folders may only be empty),
  and the temporary folder stays empty (no probe or temporary file left behind).

Filesystem faults are simulated (the tests run as root, for whom chmod makes nothing read-only): a read-only
folder is `tempfile.mkstemp` raising EROFS in that folder, a full disk is `os.replace` raising ENOSPC.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli import app

DATA = Path(os.environ.get("BENCH_DATA_DIR") or Path(__file__).parent.parent.parent / "shared" / "data")
runner = CliRunner()


class ModelLoaded(BaseException):
    """Raised by the probe when a command loads model weights (BaseException: no handler turns it into a line)."""


# ------------------------------------------------------------------------------------------ the world of a case


@dataclass
class World:
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    loads: list[str] = field(default_factory=list)

    @property
    def results(self) -> Path:
        return self.tmp / "results"

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"

    def file(self, name: str = "a-file", text: str = "not a folder\n") -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def folder(self, name: str) -> Path:
        p = self.tmp / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def custom(self, rows: list[dict[str, Any]], sidecar: dict[str, Any] | None = None, name: str = "qa") -> str:
        path = self.tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if sidecar is not None:
            (self.tmp / f"{name}.jsonl.task.json").write_text(json.dumps(sidecar))
        return f"custom:{path}"

    def bbh_data(self, stem: str, text: str) -> Path:
        """A data folder whose bbh/<stem>.json holds `text`."""
        root = self.folder("data")
        (root / "bbh").mkdir(exist_ok=True)
        (root / "bbh" / f"{stem}.json").write_text(text)
        return root

    def fail_mkstemp(self, code: int, where: Callable[[Path], bool] = lambda _p: True) -> None:
        """`tempfile.mkstemp` in a folder `where` accepts raises OSError(code): a read-only or full folder."""
        real = tempfile.mkstemp

        def mkstemp(*args: Any, **kw: Any):
            folder = Path(kw.get("dir") or (args[2] if len(args) > 2 else tempfile.gettempdir()))
            if where(folder):
                raise OSError(code, os.strerror(code))
            return real(*args, **kw)

        self.monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    def fail_replace(self, code: int) -> None:
        """Every `os.replace` (the last step of every record write) raises OSError(code): a full disk."""

        def replace(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
            raise OSError(code, os.strerror(code), str(dst))

        self.monkeypatch.setattr(os, "replace", replace)

    def hub_unreachable(self) -> None:
        """No data folder anywhere and the hub at a closed local port."""
        for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "BENCH_DATA_DIR"):
            self.monkeypatch.delenv(flag, raising=False)

    def write_run(self, **kw: Any):
        from gridworld import write_run

        kw.setdefault("method", "greater")
        kw.setdefault("correct", [True, False])
        return write_run(self.results, **kw)


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[World], list[str]] | list[str]
    match: tuple[str, ...] = ()  # substrings of the one line (whitespace collapsed)
    usage: str | None = None  # a click usage error naming this option
    setup: Callable[[World], None] | None = None


def R(w: World) -> str:
    return str(w.results)


def eval_(*args: str) -> Callable[[World], list[str]]:
    """`bench eval` on 2 rows of a real task with the defaults, plus `args` ({r} = the results folder, {t} = tmp)."""
    return lambda w: ["eval", "--limit", "2", "--results", R(w), *(a.format(r=R(w), t=w.tmp) for a in args)]


def optimize(*args: str) -> Callable[[World], list[str]]:
    return lambda w: ["optimize", "--preset", "smoke", "--limit", "2", "--results", R(w),
                      *(a.format(r=R(w), t=w.tmp) for a in args)]


def run(*args: str) -> Callable[[World], list[str]]:
    return lambda w: ["run", "--methods", "zs-cot,greater", "--preset", "smoke", "--limit", "2", "--results", R(w),
                      *(a.format(r=R(w), t=w.tmp) for a in args)]


def folder_task(w: World) -> list[str]:
    w.folder("qa.jsonl")
    return eval_("--tasks", f"custom:{w.tmp / 'qa.jsonl'}")(w)


YES_NO = [{"input": f"Is {i} even?", "target": "Yes" if i % 2 == 0 else "No"} for i in range(10)]


def contradicting_sidecar(w: World) -> list[str]:
    return eval_("--tasks", w.custom(YES_NO, {"answer_format": "integer"}))(w)


def only_train_rows(w: World) -> list[str]:
    return eval_("--tasks", w.custom([{**r, "split": "train"} for r in YES_NO[:4]] + [{**YES_NO[4], "split": "dev"}]))(w)


def read_only(results: bool) -> Callable[[World], None]:
    def setup(w: World) -> None:
        target = w.results if results else w.cache
        w.folder(target.name)
        w.fail_mkstemp(errno.EROFS, lambda folder: folder.resolve() == target.resolve())

    return setup


def unreachable(w: World) -> None:
    w.hub_unreachable()


def one_source_run(w: World) -> None:
    w.write_run(model="tiny-a", task="bbh:navigate")


def model_folder(w: World, name: str = "tiny-b") -> str:
    """A folder that passes for a Hugging Face model (config.json): loading it trips the probe."""
    folder = w.folder(name)
    (folder / "config.json").write_text("{}")
    return str(folder)


def transfer(*args: str, models: Callable[[World], str] = model_folder) -> Callable[[World], list[str]]:
    """`bench transfer` of the stored source runs onto a model folder (or `models`), plus `args`."""
    return lambda w: ["transfer", "--eval-models", models(w), "--results", R(w), *(a.format(r=R(w), t=w.tmp) for a in args)]


RUN_BAR = ("harness/cli/grid.py run_cmd opens its rich Progress before run_grid checks tasks, data and the results "
           "folder, so a 'cells 0/? 0:00:00' line precedes the error line")


CASES = [
    # ------------------------------------------------------------------ bench eval
    Case("eval: preset typo", eval_("--preset", "smok"), ("unknown preset 'smok'", "did you mean 'smoke'")),
    Case("eval: dtype float64", eval_("--dtype", "float64"), ("unknown dtype 'float64'", "float32")),
    Case("eval: unknown split", eval_("--split", "validation"), ("unknown split 'validation'", "train, dev or test")),
    Case("eval: unknown task", eval_("--tasks", "bbh:navigat"), ("unknown task 'bbh:navigat'", "did you mean 'bbh:navigate'")),
    Case("eval: unknown task among known", eval_("--tasks", "bbh:navigate,gsm9k"), ("unknown task 'gsm9k'", "bench tasks")),
    Case("eval: no task", eval_("--tasks", ","), ("no task given", "bench tasks")),
    Case("eval: unknown model", eval_("--model", "smollm3-135m"), ("unknown model 'smollm3-135m'", "bench models")),
    Case("eval: model folder without config.json", lambda w: eval_("--model", str(w.folder("not-a-model")))(w),
         ("no config.json", "point at the folder")),
    Case("eval: unknown reading", eval_("--reading", "greedier"), ("unknown reading 'greedier'", "greedy, options")),
    Case("eval: unknown backend", eval_("--backend", "vlm"), ("unknown backend 'vlm'", "hf, vllm")),
    Case("eval: openai backend without a URL", eval_("--backend", "openai"), ("--backend openai needs --base-url",)),
    Case("eval: unknown engine", eval_("--engine", "lmeval"), ("unknown engine 'lmeval'", "lm-eval")),
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
    Case("optimize: dtype float64", optimize("--dtype", "float64"), ("unknown dtype 'float64'",)),
    Case("optimize: negative --seed", optimize("--seed", "-1"), ("--seed must be a non-negative integer (got -1)",)),
    Case("optimize: --max-new-tokens 0", optimize("--max-new-tokens", "0"), usage="--max-new-tokens"),
    Case("optimize: --limit 0", optimize("--limit", "0"), usage="--limit"),
    Case("optimize: unknown reading", optimize("--reading", "best"), ("unknown reading 'best'",)),
    Case("optimize: openai optimizer without a URL", optimize("--optimizer-backend", "openai", "--optimizer-model", "gpt-x"),
         ("needs --optimizer-model NAME and --base-url URL",)),
    Case("optimize: unknown optimizer backend", optimize("--optimizer-backend", "tgi", "--optimizer-model", "gpt-x"),
         ("unknown optimizer backend 'tgi'",)),
    Case("optimize: results is a file", lambda w: optimize("--results", str(w.file()))(w), ("a file is in the way",)),
    Case("optimize: full disk", optimize(), ("No space left on device", "free some disk space"),
         setup=lambda w: w.fail_replace(errno.ENOSPC)),
    # ------------------------------------------------------------------ bench run
    Case("run: --seeds 2-0", run("--seeds", "2-0"), ("seed range '2-0' runs backwards", "0-2")),
    Case("run: --seeds x", run("--seeds", "x"), ("bad seed list 'x'", "0,1,2")),
    Case("run: negative --seeds", run("--seeds", "-1"), ("bad seed list '-1'",)),
    Case("run: preset typo", run("--preset", "smok"), ("unknown preset 'smok'", "did you mean 'smoke'")),
    Case("run: --budget -5", run("--budget", "-5"), ("--budget must be a positive number", "-5")),
    Case("run: dtype float64", run("--dtype", "float64"), ("unknown dtype 'float64'",)),
    Case("run: unknown method", run("--methods", "zs-cot,greatr"), ("unknown method 'greatr'", "did you mean 'greater'")),
    Case("run: unknown task", run("--tasks", "bbh:navigate,bbh:nope"), ("unknown task 'bbh:nope'",)),
    Case("run: unknown backend", run("--backend", "tgi"), ("unknown backend 'tgi'",)),
    Case("run: unknown reading", run("--reading", "x"), ("unknown reading 'x'",)),
    Case("run: unknown position", run("--position", "middle"), usage="--position"),
    Case("run: --max-new-tokens 0", run("--max-new-tokens", "0"), usage="--max-new-tokens"),
    Case("run: --limit 0", run("--limit", "0"), usage="--limit"),
    Case("run: no model", run("--models", " , "), ("no model given",)),
    Case("run: results is a file", lambda w: run("--results", str(w.file()))(w), ("a file is in the way",)),
    Case("run: read-only results folder", run(), ("is not writable", "Read-only file system"), setup=read_only(results=True)),
    Case("run: full disk", run(), ("No space left on device", "free some disk space"), setup=lambda w: w.fail_replace(errno.ENOSPC)),
    Case("run: BENCH_CACHE_DIR names a file", run(), ("a file is in the way", "BENCH_CACHE_DIR"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_CACHE_DIR", str(w.file("cache-file")))),
    Case("run: empty data folder", lambda w: run("--data-dir", str(w.folder("empty")))(w), ("no data for bbh:navigate", "--data-dir")),
    Case("run: hub unreachable (no data folder)", run(), ("cannot be reached", "--data-dir"), setup=unreachable),
    Case("run: unknown model after a good one", lambda w: run("--models", f"{model_folder(w)},smollm3-135m")(w),
         ("unknown model 'smollm3-135m'",)),
    # issue 23: found outside this table, trying inputs as a new user would
    Case("run: --seeds ² (a superscript digit int() refuses)", run("--seeds", "²"), ("--seeds: bad seed list '²'", "ASCII digits")),
    Case("run: --seeds in Arabic-Indic digits (int() reads them)", run("--seeds", "٠,١"),
         ("--seeds: bad seed list '٠,١'", "ASCII digits like 0,1,2")),
    Case("run: a huge seed range", run("--seeds", "0-100000000000"),
         ("--seeds: the range '0-100000000000' holds 100000000001 seeds, more than 1000", "e.g. 0-2")),
    Case("run: --dry-run --rate 0", run("--dry-run", "--rate", "0"),
         ("--rate must be a number of task-model tokens per second above 0 (got 0)", "e.g. --rate 120")),
    Case("run: --dry-run --rate -5", run("--dry-run", "--rate", "-5"), ("--rate must be", "above 0 (got -5)")),
    Case("run: --dry-run --rate nan", run("--dry-run", "--rate", "nan"), ("--rate must be", "above 0 (got nan)")),
    Case("run: --ray-address where no cluster answers", run("--executor", "ray", "--ray-address", "127.0.0.1:1"),
         ("no Ray cluster answers at 127.0.0.1:1", "check --ray-address / RAY_ADDRESS", "ray start --head")),
    Case("run: --ray-address that is no address", run("--executor", "ray", "--ray-address", "http://head"),
         ("bad Ray address 'http://head'", "HEAD:PORT", "--ray-address / RAY_ADDRESS")),
    Case("eval: BENCH_PROGRESS_SECONDS=abc", eval_(), ("BENCH_PROGRESS_SECONDS='abc' is not a number of seconds", "e.g. 15"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_PROGRESS_SECONDS", "abc")),
    Case("optimize: BENCH_PROGRESS_SECONDS=-1", optimize(), ("BENCH_PROGRESS_SECONDS='-1'", "e.g. 15"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_PROGRESS_SECONDS", "-1")),
    Case("eval: --seed in Arabic-Indic digits", eval_("--seed", "٣"), usage="--seed"),
    # every environment variable the harness reads is checked where it is read, its name in the line
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
    Case("eval: BENCH_BACKEND unknown", eval_(), ("unknown backend 'tgi'", "BENCH_BACKEND"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_BACKEND", "tgi")),
    Case("run: BENCH_CORE_LOCKS where no folder can be made", run("--executor", "ray", "--ray-address", "auto"),
         ("cannot create the core lock folder", "BENCH_CORE_LOCKS"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_CORE_LOCKS", str(w.file("locks-file") / "sub"))),
    # ------------------------------------------------------------------ bench leaderboard
    Case("leaderboard: unknown format", lambda w: ["leaderboard", "--results", R(w), "--format", "xml"],
         ("unknown format 'xml'", "md, csv, html"), setup=one_source_run),
    Case("leaderboard: missing folder", lambda w: ["leaderboard", "--results", R(w)], ("no results folder", "bench run")),
    Case("leaderboard: empty folder", lambda w: ["leaderboard", "--results", R(w)], ("no finished runs in", "bench run"),
         setup=lambda w: w.folder("results") and None),
    Case("leaderboard: results is a file", lambda w: ["leaderboard", "--results", str(w.file())], ("no results folder",)),
    Case("leaderboard: corrupt summary", lambda w: ["leaderboard", "--results", R(w)],
         ("corrupt or truncated record", "delete the run folder"),
         setup=lambda w: (one_source_run(w), next(w.results.iterdir()).joinpath("summary.json").write_text('{"sch'))),
    Case("leaderboard: --output under a file", lambda w: ["leaderboard", "--results", R(w), "--output", str(w.file() / "lb.md")],
         ("a file is in the way",), setup=one_source_run),
    Case("leaderboard: run folder from before typed specs", lambda w: ["leaderboard", "--results", R(w)], ("bench migrate",),
         setup=lambda w: (one_source_run(w), old_spec(next(w.results.iterdir())))),
    # ------------------------------------------------------------------ bench transfer
    Case("transfer: no eval models", lambda w: ["transfer", "--eval-models", ",", "--results", R(w)], ("no model given",),
         setup=one_source_run),
    Case("transfer: --eval-models missing", lambda w: ["transfer", "--results", R(w)], usage="--eval-models"),
    Case("transfer: no source runs (empty folder)", lambda w: ["transfer", "--eval-models", "tiny-b", "--results", R(w)],
         ("no finished optimize runs in", "bench run"), setup=lambda w: w.folder("results") and None),
    Case("transfer: no source runs (missing folder)", lambda w: ["transfer", "--eval-models", "tiny-b", "--results", R(w)],
         ("no results folder", "bench run")),
    Case("transfer: filters leave no source run", lambda w: ["transfer", "--eval-models", "tiny-b", "--methods", "ape", "--results", R(w)],
         ("no finished optimize runs", "after filters"), setup=one_source_run),
    Case("transfer: unknown eval model", lambda w: ["transfer", "--eval-models", "smollm3-135m", "--results", R(w)],
         ("unknown model 'smollm3-135m'",), setup=one_source_run),
    Case("transfer: unknown backend", lambda w: ["transfer", "--eval-models", "tiny-b", "--backend", "tgi", "--results", R(w)],
         ("unknown backend 'tgi'",), setup=one_source_run),
    Case("transfer: unknown model after a good one", transfer(models=lambda w: model_folder(w) + ",smollm3-135m"),
         ("unknown model 'smollm3-135m'",), setup=one_source_run),
    Case("transfer: model folder without config.json", transfer(models=lambda w: str(w.folder("empty-model"))),
         ("no config.json",), setup=one_source_run),
    Case("transfer: read-only results folder", transfer(), ("is not writable", "Read-only file system"),
         setup=lambda w: (one_source_run(w), read_only(results=True)(w))),
    Case("transfer: full disk", transfer(), ("No space left on device", "free some disk space"),
         setup=lambda w: (one_source_run(w), w.fail_replace(errno.ENOSPC))),
    Case("transfer: BENCH_CACHE_DIR names a file", transfer(), ("a file is in the way", "BENCH_CACHE_DIR"),
         setup=lambda w: (one_source_run(w), w.monkeypatch.setenv("BENCH_CACHE_DIR", str(w.file("cache-file"))))),
    Case("transfer: --output under a file", lambda w: transfer("--output", str(w.file() / "m"))(w), ("a file is in the way",),
         setup=one_source_run),
    Case("transfer: --batch-size 0", transfer("--batch-size", "0"), usage="--batch-size", setup=one_source_run),
    # ------------------------------------------------------------------ bench export lm-eval
    Case("export: not a run folder", lambda w: ["export", "lm-eval", "--run", str(w.folder("plain"))],
         ("is not a finished run folder", "results/<run id>")),
    Case("export: missing run folder", lambda w: ["export", "lm-eval", "--run", str(w.tmp / "nowhere")],
         ("is not a finished run folder",)),
    Case("export: corrupt spec.json", lambda w: ["export", "lm-eval", "--run", str(next(w.results.iterdir()))],
         ("corrupt or truncated record", "spec.json"),
         setup=lambda w: (one_source_run(w), next(w.results.iterdir()).joinpath("spec.json").write_text("{"))),
    Case("export: --run missing", ["export", "lm-eval"], usage="--run"),
    # ------------------------------------------------------------------ bench migrate
    Case("migrate: missing folder", lambda w: ["migrate", str(w.tmp / "nowhere")], ("no results folder", "name the folder")),
    Case("migrate: a file", lambda w: ["migrate", str(w.file())], ("no results folder",)),
    Case("migrate: spec.json without a spec", lambda w: ["migrate", R(w)], ("malformed record", "spec.json"),
         setup=lambda w: (one_source_run(w), next(w.results.iterdir()).joinpath("spec.json").write_text('{"schema": 1}'))),
    Case("migrate: corrupt spec.json", lambda w: ["migrate", R(w)], ("corrupt or truncated record", "spec.json"),
         setup=lambda w: (one_source_run(w), next(w.results.iterdir()).joinpath("spec.json").write_text("{"))),
]


# ------------------------------------------------------------------------------------------ the checks


def old_spec(folder: Path) -> None:
    """Make a run folder's spec.json look like one written before typed run specs (spec version 1)."""
    meta = json.loads((folder / "spec.json").read_text())
    meta["spec"]["extra"] = {"preset": meta["spec"].pop("preset")}
    (folder / "spec.json").write_text(json.dumps(meta))


def tree(root: Path) -> dict[str, str]:
    """Every path under `root`: "dir" or the sha256 of the file's bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def patch_loaders(monkeypatch: pytest.MonkeyPatch, loads: list[str]) -> None:
    """Every way a command loads model weights appends to `loads` and raises `ModelLoaded`."""
    import harness.backends.hf
    import harness.backends.models
    import harness.backends.openai

    def loaded(what: str) -> Callable[..., Any]:
        def probe(*args: Any, **kw: Any) -> Any:
            loads.append(f"{what} {args[:1]}")
            raise ModelLoaded(f"{what} was called: a model was loaded before the input was refused")

        return probe

    monkeypatch.setattr(harness.backends.hf, "_load", loaded("hf weights"))
    monkeypatch.setattr(harness.backends.models, "converted_folder", loaded("GGUF conversion"))
    monkeypatch.setattr(harness.backends.openai.OpenAIGenerator, "__init__", loaded("openai client"))
    try:
        import harness.backends.vllm

        monkeypatch.setattr(harness.backends.vllm.VLLMGenerator, "__init__", loaded("vllm engine"))
    except ImportError:
        pass


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = World(tmp_path / "case", monkeypatch)
    w.tmp.mkdir()
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    monkeypatch.chdir(w.folder("cwd"))  # the default ./bench-results and ./data lie here
    for var in ("BENCH_RESULTS", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BENCH_DATA_DIR", str(DATA))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(w.cache))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing here may reach the network
    patch_loaders(monkeypatch, w.loads)
    yield w, system_tmp


USAGE_LINES = (re.compile(r"^Usage: "), re.compile(r"^Try '.*--help' for help\.$"))


def check(case: Case, w: World, system_tmp: Path) -> None:
    if case.setup is not None:
        case.setup(w)
    args = case.args(w) if callable(case.args) else list(case.args)
    before = tree(w.tmp)
    res = runner.invoke(app, args, env={"COLUMNS": "2000"})  # one line, however long: never wrapped here
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    shown = "\n".join(lines)
    assert not w.loads, f"a model was loaded: {w.loads}\n{shown}"
    assert "Traceback" not in res.output, shown
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, f"exit code {res.exit_code}:\n{shown}"
    if case.usage is None:
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line:\n{shown}"
        text = " ".join(lines[0].split())
        for part in case.match:
            assert part in text, f"{part!r} not in {text!r}"
    else:
        errors = [ln for ln in lines if ln.startswith("Error: ")]
        others = [ln for ln in lines if not ln.startswith("Error: ")]
        assert len(errors) == 1 and case.usage in errors[0], f"not a usage error naming {case.usage}:\n{shown}"
        assert all(any(p.match(ln) for p in USAGE_LINES) for ln in others), shown
    after = tree(w.tmp)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert all(k not in before and after[k] == "dir" for k in changed), f"written: {changed}"
    for k in changed:  # only empty folders may appear (a checked --results or cache folder)
        assert not any((w.tmp / k).iterdir()), f"written under {k}: {list((w.tmp / k).iterdir())}"
    assert not list(system_tmp.iterdir()), f"temporary files left: {list(system_tmp.iterdir())}"


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name)
             for c in CASES],
)
def test_bad_input_is_one_line_before_any_model_loads(case, world):
    check(case, *world)


def test_the_table_covers_every_command(tmp_path, monkeypatch):
    commands = set()
    for i, case in enumerate(CASES):
        w = World(tmp_path / str(i), monkeypatch)
        (w.results / "run").mkdir(parents=True)  # what the args of a case with stored runs point into
        args = case.args(w) if callable(case.args) else case.args
        commands.add(" ".join(args[:2]) if args[0] == "export" else args[0])
    assert commands == {"eval", "optimize", "run", "leaderboard", "transfer", "export lm-eval", "migrate"}
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


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
