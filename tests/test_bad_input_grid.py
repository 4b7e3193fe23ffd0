"""Bad input to `bench run`, `leaderboard`, `transfer`, `export lm-eval` and `migrate`: refused at once, in one
line, before any model loads, writing nothing (the rule: `badinput.check`). `bench eval` and `bench optimize`:
test_bad_input.py."""

from __future__ import annotations

import errno

import pytest
from badinput import (
    Case,
    R,
    World,
    check,
    model_folder,
    old_spec,
    one_source_run,
    read_only,
    run,
    transfer,
    unreachable,
    world_fixture,  # noqa: F401  (the `world` fixture of every case)
)
from test_bad_input import CASES as EVAL_AND_OPTIMIZE_CASES

CASES = [
    # ------------------------------------------------------------------ bench run
    Case("run: --seeds 2-0", run("--seeds", "2-0"), ("seed range '2-0' runs backwards", "0-2")),
    Case("run: --seeds x", run("--seeds", "x"), ("bad seed list 'x'", "0,1,2")),
    Case("run: negative --seeds", run("--seeds", "-1"), ("bad seed list '-1'",)),
    Case("run: preset typo", run("--preset", "smok"), ("unknown preset 'smok'", "did you mean 'smoke'")),
    Case("run: --budget -5", run("--budget", "-5"), ("--budget must be a positive number", "-5")),
    Case("run: dtype float64", run("--dtype", "float64"), ("'float64' is not one of",), usage="--dtype"),
    Case("run: unknown method", run("--methods", "zs-cot,greatr"), ("unknown method 'greatr'", "did you mean 'greater'")),
    Case("run: unknown task", run("--tasks", "bbh:navigate,bbh:nope"), ("unknown task 'bbh:nope'",)),
    Case("run: unknown backend", run("--backend", "tgi"), ("'tgi' is not one of",), usage="--backend"),
    Case("run: unknown reading", run("--reading", "x"), ("'x' is not one of",), usage="--reading"),
    Case("run: unknown executor", run("--executor", "slurm"), ("'slurm' is not one of 'local', 'ray'",), usage="--executor"),
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
    # issue 23: found outside this table, trying inputs as a new user would (and the environment variables each
    # command reads, checked where they are read, their names in the line)
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
    Case("run: BENCH_CORE_LOCKS where no folder can be made", run("--executor", "ray", "--ray-address", "auto"),
         ("cannot create the core lock folder", "BENCH_CORE_LOCKS"),
         setup=lambda w: w.monkeypatch.setenv("BENCH_CORE_LOCKS", str(w.file("locks-file") / "sub"))),
    # ------------------------------------------------------------------ bench leaderboard
    Case("leaderboard: unknown format", lambda w: ["leaderboard", "--results", R(w), "--format", "xml"],
         ("'xml' is not one of 'md', 'csv', 'html'",), usage="--format", setup=one_source_run),
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
         ("'tgi' is not one of",), usage="--backend", setup=one_source_run),
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


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_bad_input_is_one_line_before_any_model_loads(case, world):
    check(case, *world)


def test_the_table_covers_every_command(tmp_path, monkeypatch):
    commands = set()
    every = EVAL_AND_OPTIMIZE_CASES + CASES
    for i, case in enumerate(every):
        w = World(tmp_path / str(i), monkeypatch)
        (w.results / "run").mkdir(parents=True)  # what the args of a case with stored runs point into
        args = case.args(w) if callable(case.args) else case.args
        commands.add(" ".join(args[:2]) if args[0] == "export" else args[0])
    assert commands == {"eval", "optimize", "run", "leaderboard", "transfer", "export lm-eval", "migrate"}
    assert len(every) >= 40 and len({c.name for c in every}) == len(every)
