"""Prompt transfer: score every stored optimized prompt on other models (the matrices of the results are
`harness.reports.transfer`'s, from the run folders this writes).

Each (prompt, target model) pair is an ordinary eval run (`harness.runner.run.run_eval`) whose spec names its
source run, so results are cached run folders: a repeated or interrupted transfer redoes only what is
missing. Targets are handled one at a time: the model is opened once, every prompt is scored on it, then it
is freed before the next model loads. HF and OpenAI-compatible models are opened in this process; a backend
that owns its process (vLLM: one engine per process, never unloaded) runs each target in a child process
(`evaluate_in_child`, through `harness.runner.child`), one after another; the parent only reads the run folders.
The diagonal (a prompt on its own model) is the optimize cell's own test result and is not recomputed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.context import Progress, ProgressEvent, no_progress
from harness.core.records import DEFAULT_RESULTS, iter_runs
from harness.core.spec import RunSpec, TransferSource
from harness.core.types import BenchError
from harness.runner.child import Send, needs_own_process, run_in_child
from harness.runner.data import RunData
from harness.runner.pool import ModelPool, PoolSettings
from harness.runner.records import RunFolder
from harness.runner.run import run_eval


@dataclass(frozen=True)
class Source:
    spec: RunSpec  # the optimize cell
    prompt: str


@dataclass(frozen=True)
class TransferRun:
    """What `run_transfer` scored: the source cells' run ids and every model involved (sources and targets),
    which `harness.reports.transfer.transfer_report` turns into matrices."""

    sources: tuple[str, ...]
    models: tuple[str, ...]


def source_runs(
    results_dir: str | Path, *, methods: Iterable[str] | None = None, tasks: Iterable[str] | None = None,
    models: Iterable[str] | None = None, seeds: Iterable[int] | None = None,
) -> list[Source]:
    """The finished optimize cells under `results_dir` (optionally filtered), in run-id order."""
    keep = {"method": set(methods or ()), "task": set(tasks or ()), "model": set(models or ()), "seed": set(seeds or ())}
    out = []
    for run in iter_runs(results_dir):
        if run.kind != "optimize":
            continue
        spec = run.spec.run_spec
        if any(want and getattr(spec, k) not in want for k, want in keep.items()):
            continue
        out.append(Source(spec=spec, prompt=run.prompt))
    return out


def eval_spec(source: Source, target: str, data: RunData, backend: str | None = None) -> RunSpec:
    """The eval run of `source`'s prompt on `target`, with the source's decoding and split settings (and its
    backend unless `backend` names another: float32 vLLM and HF decode the same greedy tokens)."""
    s = source.spec
    return RunSpec(
        kind="eval", task=s.task, model=target, data=data.eval_fingerprint(s.task, "test", s.limit, s.split_seed),
        backend=backend or s.backend, method=s.method, prompt=source.prompt or None,
        position=s.position, split="test", limit=s.limit, max_new_tokens=s.max_new_tokens, dtype=s.dtype,
        seed=s.seed, split_seed=s.split_seed, primary_reading=s.primary_reading,
        source=TransferSource(run=s.run_id, model=s.model, preset=s.preset),
    )


def transfer_plan(
    sources: Sequence[Source], eval_models: Sequence[str], data: RunData, backend: str | None = None
) -> dict[str, list[RunSpec]]:
    """target model -> the eval specs to score on it (every source optimized on another model)."""
    return {t: [eval_spec(src, t, data, backend) for src in sources if src.spec.model != t] for t in eval_models}


def evaluate_on_model(
    target: str, specs: Sequence[RunSpec], *, settings: PoolSettings | None = None,
    data_dir: str | Path | None = None, out: str | Path = DEFAULT_RESULTS, progress: Progress = no_progress,
) -> list[dict[str, Any]]:
    """Score `specs` (all on `target`) with one model load in this process; finished ones are read back
    without loading it. `settings`: the model pool's (opener, cache, threads, batch size, device), as `bench run`
    takes them. `progress` gets one event per prompt (phase: the target model)."""
    todo = [s for s in specs if not RunFolder(Path(out), s).finished]
    pool = ModelPool(settings)
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
            progress(ProgressEvent(phase=target, done=i + 1, total=len(specs)))
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
    seeds: Iterable[int] | None = None,
    data_dir: str | Path | None = None,
    settings: PoolSettings | None = None,
    progress: Progress = no_progress,
    report_dir: str | Path | None = None,
    isolate: bool | None = None,
    backend: str | None = None,
) -> TransferRun:
    """Score every stored optimized prompt on every model of `eval_models` (each pair an eval run folder in
    `results_dir`); `harness.reports.transfer.transfer_report` then reads the matrices from the records.

    `methods`, `tasks`, `source_models`, `seeds`: only the optimize cells with these (None: all).
    `isolate`: evaluate each target model in its own child process (True), in this process (False), or
    decide by backend (None: a child for backends outside `harness.runner.child.IN_PROCESS_BACKENDS`). `settings`:
    each target's model pool (`PoolSettings`, as `bench run` takes them); its opener replaces the backends
    (tests), as "module:function" when a child process needs it. `backend`: decode the transfer evaluations with
    this backend instead of each source run's own (e.g. vllm for speed). `progress`: one event per prompt scored
    (phase: the target model). `report_dir`: the
    folder the report will be written to, checked for writing before any model loads.
    """
    if not eval_models:
        raise BenchError("no evaluation model given: use e.g. --eval-models smollm2-135m,gemma3-270m")
    sources = source_runs(results_dir, methods=methods, tasks=tasks, models=source_models, seeds=seeds)
    if not sources:
        raise BenchError(f"no finished optimize runs in {results_dir} (after filters): run `bench run` first")
    if backend is not None:
        from harness.backends import resolve_backend

        backend = resolve_backend(backend)
    settings = settings or PoolSettings()
    if settings.opener is None and "openai" not in ({backend} if backend else {s.spec.backend for s in sources}):
        _check_models(eval_models)  # a typo in the last model fails before the first one loads
    _check_folders(results_dir, report_dir, cache=settings.cache and settings.opener is None)
    plan = transfer_plan(sources, eval_models, RunData(data_dir), backend)  # data checked before any model loads
    for target, specs in plan.items():
        own_process = isolate if isolate is not None else any(needs_own_process(s.backend) for s in specs)
        how = {"settings": settings, "data_dir": data_dir, "out": results_dir, "progress": progress}
        if own_process and not all(RunFolder(Path(results_dir), s).finished for s in specs):
            evaluate_in_child(target, specs, **how)
        else:  # in this process (finished evaluations are read back without opening the model)
            evaluate_on_model(target, specs, **how)
    models = dict.fromkeys([*(s.spec.model for s in sources), *eval_models])
    return TransferRun(sources=tuple(s.spec.run_id for s in sources), models=tuple(models))


def evaluate_in_child(
    target: str, specs: Sequence[RunSpec], *, settings: PoolSettings | None = None,
    data_dir: str | Path | None = None, out: str | Path = DEFAULT_RESULTS, progress: Progress = no_progress,
) -> None:
    """`evaluate_on_model` in a child process, so this process never loads `target` and everything the model
    held is freed when the child exits. Each evaluation is a run folder written atomically, so a failed child
    loses at most the one in progress. The child's output goes to a log file, kept when it fails."""
    job = {"target": target, "specs": [s.to_dict() for s in specs], "settings": (settings or PoolSettings()).for_child(),
           "data_dir": str(Path(data_dir).resolve()) if data_dir is not None else None, "out": str(Path(out).resolve())}

    def tick(done_total: list[int]) -> None:
        progress(ProgressEvent(phase=target, done=done_total[0], total=done_total[1]))

    run_in_child("harness.runner.transfer:evaluate_job", job, on_message=tick,
                 what=f"evaluating on {target}", log_name=f"transfer-{Path(target).name}", kept="finished evaluations are kept")


def evaluate_job(job: dict[str, Any], send: Send) -> None:
    """The child's side of `evaluate_in_child`: sends one [done, total] per prompt."""
    evaluate_on_model(
        job["target"], [RunSpec.from_dict(s) for s in job["specs"]], settings=PoolSettings.from_dict(job["settings"]),
        data_dir=job["data_dir"], out=job["out"], progress=lambda e: send([e.done, e.total]),
    )


def _check_models(names: Iterable[str]) -> None:
    """Each name is an alias, a local Hugging Face folder or a reachable (or cached) hub id; nothing is loaded."""
    from harness.backends.models import PACKAGED, resolve_model

    for name in names:
        if name not in PACKAGED:  # an alias resolves by converting its GGUF: left to the load
            resolve_model(name)


def _check_folders(results_dir: str | Path, report_dir: str | Path | None, *, cache: bool) -> None:
    """The folders written to (run folders, matrices, the response cache) must be writable before a model loads."""
    from harness.core.io import check_writable

    check_writable(results_dir)
    if report_dir is not None:
        check_writable(report_dir, "report")
    if cache:
        from harness.backends.models import cache_dir

        try:
            check_writable(cache_dir(), "cache")
        except BenchError as e:
            raise BenchError(f"{e} (BENCH_CACHE_DIR; converted models and the response cache live there, "
                             "--no-cache skips only the latter)") from None
