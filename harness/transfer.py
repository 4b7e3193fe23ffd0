"""Prompt transfer: score every stored optimized prompt on other models, and the source x target matrices.

Each (prompt, target model) pair is an ordinary eval run (`harness.run.run_eval`) whose spec names its
source run, so results are cached run folders: a repeated or interrupted transfer redoes only what is
missing. Targets are handled one at a time: the model is opened once, every prompt is scored on it, then it
is freed before the next model loads. HF and OpenAI-compatible models are opened in this process; a backend
that owns its process (vLLM: one engine per process, never unloaded) runs each target in a child process
(`python -m harness.transfer`, see `evaluate_in_child`), one after another; the parent only reads the run
folders. The diagonal (a prompt on its own model) is the optimize cell's own test result and is not recomputed.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.records import RunFolder
from harness.report import load_records, read_json_record, transfer_matrices, transfer_table
from harness.run import DEFAULT_RESULTS, run_eval
from harness.types import BenchError, RunSpec

ProgressFn = Callable[[str, int, int], None]  # (target model, prompts done, prompts on this target)
Opener = Callable[[str, str, str], Any]  # (model, backend, dtype) -> Generator, as harness.grid.ModelPool takes

# Backends whose models are opened, used and freed inside one process; any other (vllm, ...) gets a child
# process per target model unless told otherwise (`isolate`).
IN_PROCESS_BACKENDS = ("hf", "openai", "fake")


def needs_own_process(backend: str) -> bool:
    return backend not in IN_PROCESS_BACKENDS


def resolve_opener(opener: Opener | str | None) -> Opener | None:
    """An opener given as "module:function" (a form a child process can import too) becomes that function."""
    if opener is None or callable(opener):
        return opener
    module, _, name = opener.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise BenchError(f"opener {opener!r} is not importable: give it as 'module:function'") from None


@dataclass(frozen=True)
class Source:
    spec: RunSpec  # the optimize cell
    prompt: str


def source_runs(
    results_dir: str | Path, *, methods: Iterable[str] | None = None, tasks: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
) -> list[Source]:
    """The finished optimize cells under `results_dir` (optionally filtered), in run-id order."""
    root = Path(results_dir)
    if not root.is_dir():
        raise BenchError(f"no results folder {root}: run `bench run` first or pass --results")
    keep = {"method": set(methods or ()), "task": set(tasks or ()), "model": set(models or ())}
    out = []
    for folder in sorted(p for p in root.iterdir() if (p / "summary.json").exists() and (p / "spec.json").exists()):
        meta = read_json_record(folder / "spec.json")
        if meta["spec"]["kind"] != "optimize":
            continue
        spec = RunSpec(**meta["spec"])
        if any(want and getattr(spec, k) not in want for k, want in keep.items()):
            continue
        out.append(Source(spec=spec, prompt=read_json_record(folder / "summary.json")["prompt"]))
    return out


def eval_spec(source: Source, target: str) -> RunSpec:
    """The eval run of `source`'s prompt on `target`, with the source's decoding and split settings."""
    s = source.spec
    return RunSpec(
        kind="eval", task=s.task, model=target, backend=s.backend, method=s.method, prompt=source.prompt or None,
        position=s.position, split="test", limit=s.limit, max_new_tokens=s.max_new_tokens, dtype=s.dtype,
        seed=s.seed, split_seed=s.split_seed, primary_reading=s.primary_reading,
        extra={"source_run": s.run_id, "source_model": s.model, "preset": s.extra.get("preset", "?")},
    )


def transfer_plan(sources: Sequence[Source], eval_models: Sequence[str]) -> dict[str, list[RunSpec]]:
    """target model -> the eval specs to score on it (every source optimized on another model)."""
    return {t: [eval_spec(src, t) for src in sources if src.spec.model != t] for t in eval_models}


def evaluate_on_model(
    target: str, specs: Sequence[RunSpec], *, opener: Opener | str | None = None, cache: bool = True,
    data_dir: str | Path | None = None, out: str | Path = DEFAULT_RESULTS, progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Score `specs` (all on `target`) with one model load in this process; finished ones are read back
    without loading it."""
    from harness.grid import ModelPool

    todo = [s for s in specs if not RunFolder(Path(out), s).finished]
    tick = progress or (lambda *_: None)
    pool = ModelPool(opener=resolve_opener(opener), cache=cache)
    try:
        gen = None
        summaries = []
        for i, spec in enumerate(specs):
            if spec in todo and gen is None:
                gen = pool.generator(target, backend=spec.backend, dtype=spec.dtype)
            if spec in todo:
                summaries.append(run_eval(spec, gen, data_dir=data_dir, out=out))
            else:
                summaries.append(RunFolder(Path(out), spec).summary())
            tick(target, i + 1, len(specs))
        return summaries
    finally:
        pool.close()


def run_transfer(
    results_dir: str | Path,
    eval_models: Sequence[str],
    *,
    methods: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
    source_models: Iterable[str] | None = None,
    data_dir: str | Path | None = None,
    opener: Opener | str | None = None,
    cache: bool = True,
    progress: ProgressFn | None = None,
    report_dir: str | Path | None = None,
    isolate: bool | None = None,
) -> dict[tuple[str, str], pd.DataFrame]:
    """Score every stored optimized prompt on every model of `eval_models`; return (and with `report_dir`,
    write as CSV and heatmap PNG) the source x target matrix of each (preset, method).

    `isolate`: evaluate each target model in its own child process (True), in this process (False), or
    decide by backend (None: a child for backends outside `IN_PROCESS_BACKENDS`). `opener` replaces the
    backends (tests); a child process needs it as "module:function".
    """
    if not eval_models:
        raise BenchError("no evaluation model given: use e.g. --eval-models smollm2-135m,gemma3-270m")
    sources = source_runs(results_dir, methods=methods, tasks=tasks, models=source_models)
    if not sources:
        raise BenchError(f"no finished optimize runs in {results_dir} (after filters): run `bench run` first")
    for target, specs in transfer_plan(sources, eval_models).items():
        own_process = isolate if isolate is not None else any(needs_own_process(s.backend) for s in specs)
        how = {"opener": opener, "cache": cache, "data_dir": data_dir, "out": results_dir, "progress": progress}
        if own_process and not all(RunFolder(Path(results_dir), s).finished for s in specs):
            evaluate_in_child(target, specs, **how)
        else:  # in this process (finished evaluations are read back without opening the model)
            evaluate_on_model(target, specs, **how)
    involved = {s.spec.model for s in sources} | set(eval_models)
    run_ids = {s.spec.run_id for s in sources}
    records = [
        r for r in load_records(results_dir, steps=False)
        if (r.kind == "optimize" and r.run_id in run_ids)
        or (r.kind == "eval" and r.source_run in run_ids and r.model in involved)
    ]
    matrices = {k: _order(m, involved) for k, m in transfer_matrices(records).items()}
    if report_dir is not None:
        write_transfer(matrices, transfer_table(records), report_dir)
    return matrices


def evaluate_in_child(
    target: str, specs: Sequence[RunSpec], *, opener: Opener | str | None = None, cache: bool = True,
    data_dir: str | Path | None = None, out: str | Path = DEFAULT_RESULTS, progress: ProgressFn | None = None,
) -> None:
    """`evaluate_on_model` in a child process, so this process never loads `target` and everything the model
    held is freed when the child exits. Each evaluation is a run folder written atomically, so a failed child
    loses at most the one in progress. The child's output goes to a log file, kept when it fails."""
    if opener is not None and not isinstance(opener, str):
        raise BenchError("a child process cannot use an opener function: pass it as 'module:function', or isolate=False")
    job = {"target": target, "specs": [s.to_dict() for s in specs], "opener": opener, "cache": cache,
           "data_dir": str(Path(data_dir).resolve()) if data_dir is not None else None, "out": str(Path(out).resolve())}
    tick = progress or (lambda *_: None)
    fd, log_name = tempfile.mkstemp(prefix=f"bench-transfer-{Path(target).name}-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "harness.transfer"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            try:
                child.stdin.write(json.dumps(job))
                child.stdin.close()
            except BrokenPipeError:  # it died before reading its job: its log says why
                pass
            for line in child.stdout:  # one [done, total] per finished prompt
                tick(target, *json.loads(line))
            code = child.wait()
        finally:
            if child.poll() is None:  # interrupted: do not leave the model loaded in an orphan
                child.kill()
                child.wait()
    if code == 0:
        os.unlink(log_name)
        return
    lines = [ln.strip() for ln in Path(log_name).read_text(errors="replace").splitlines() if ln.strip()]
    status = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    raise BenchError(f"evaluating on {target} failed in its child process ({status}): {lines[-1] if lines else 'no output'} "
                     f"(log {log_name}); fix that and re-run, finished evaluations are kept")


def _child_main() -> int:
    """`python -m harness.transfer`, started by `evaluate_in_child`: reads the job as JSON on stdin, writes
    one [done, total] line per prompt on stdout; everything else it prints goes to stderr."""
    job = json.loads(sys.stdin.read())
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # libraries that log to stdout (vLLM does) must not mix with the progress lines
    try:
        evaluate_on_model(
            job["target"], [RunSpec(**s) for s in job["specs"]], opener=job["opener"], cache=job["cache"],
            data_dir=job["data_dir"], out=job["out"], progress=lambda _t, done, total: print(json.dumps([done, total]), file=channel),
        )
    except BenchError as e:  # the parent shows this line
        print(e, file=sys.stderr)
        return 2
    return 0


def _order(m: pd.DataFrame, involved: set[str]) -> pd.DataFrame:
    return m.loc[[i for i in m.index if i in involved], [c for c in m.columns if c in involved]]


def write_transfer(matrices: dict[tuple[str, str], pd.DataFrame], long: pd.DataFrame, report_dir: str | Path) -> list[Path]:
    """transfer-<preset>-<method>.csv and .png per matrix, plus transfer-per-task.csv; returns the paths."""
    from harness.plots import save, transfer_heatmap
    from harness.records import atomic_write_text

    root = Path(report_dir)
    paths = []
    for (preset, method), m in matrices.items():
        stem = root / f"transfer-{preset}-{method}"
        atomic_write_text(stem.with_suffix(".csv"), m.to_csv())
        png = save(transfer_heatmap(m, f"{method} (preset {preset})"), stem.with_suffix(".png"))
        paths += [stem.with_suffix(".csv"), png]
    atomic_write_text(root / "transfer-per-task.csv", long.to_csv(index=False))
    return paths + [root / "transfer-per-task.csv"]


if __name__ == "__main__":
    raise SystemExit(_child_main())
