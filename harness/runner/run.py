"""Library entry points (the CLI is a thin wrapper): evaluate an instruction, or optimize one, from a RunSpec."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from harness.core.context import OptimizeContext, Optimizer, Progress, ProgressEvent
from harness.core.records import DEFAULT_RESULTS
from harness.core.spec import RunSpec
from harness.core.types import ZERO_SHOT_COT, Budget, Example, Generator, GradientModel, Task
from harness.evaluation.evaluate import EvalResult, evaluate
from harness.evaluation.prompt_checks import leakage
from harness.runner.data import RunData
from harness.runner.records import RunFolder


def run_eval(
    spec: RunSpec,
    generator: Generator,
    *,
    data: RunData | None = None,
    data_dir: str | Path | None = None,
    out: str | Path = DEFAULT_RESULTS,
    progress: Progress | None = None,
    skip_finished: bool = True,
) -> dict[str, Any]:
    """Evaluate `spec.prompt` on `spec.task`'s `spec.split`; write the run folder; return the summary.

    A finished run folder with the same spec (hence the same run id) is read back instead of recomputed.
    The rows are `data`'s (or loaded from `data_dir`) and must match the spec's fingerprint.
    """
    if spec.kind != "eval":
        raise ValueError("run_eval takes an eval spec")
    folder = RunFolder(Path(out), spec)
    if skip_finished and folder.finished:
        return folder.summary()
    data = data or RunData(data_dir)
    data.check(spec)
    task = data.task(spec.task)
    examples = data.eval_rows(spec.task, spec.split, spec.limit, spec.split_seed)
    with folder.running():
        folder.start(split_rule=data.splits(spec.task, spec.split_seed).rule, generator=generator.identity,
                     **torch_device(generator))
        result = evaluate(
            task, examples, spec.prompt, generator, position=spec.position, max_new_tokens=spec.max_new_tokens,
            primary=spec.primary_reading, seed=spec.seed, progress=progress,
        )
        summary = {**result.summary(), "split": spec.split, "model": spec.model, "generator": generator.identity}
        folder.finish(summary, result.examples)
    return folder.summary()


def run_optimize(
    spec: RunSpec,
    task_model: Generator,
    *,
    optimizer_model: Generator | None = None,
    gradient_model: GradientModel | None = None,
    data: RunData | None = None,
    data_dir: str | Path | None = None,
    out: str | Path = DEFAULT_RESULTS,
    progress: Progress | None = None,
    optimizer: Optimizer | None = None,
    placement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Optimize a prompt for `spec.task`, then score the best prompt (and zero-shot CoT) on dev and test.
    `progress` gets the method's lines (`ProgressEvent.text`) and the final evaluations' counts.

    The run folder gets `steps.jsonl` as the method goes (so a crashed run resumes from its last completed
    step), then `predictions.jsonl` (test, per example) and `summary.json` (its presence: finished).
    """
    from harness.core.methods import spec_optimizer

    if spec.kind != "optimize":
        raise ValueError("run_optimize takes an optimize spec")
    folder = RunFolder(Path(out), spec)
    if folder.finished:
        return folder.summary()
    data = data or RunData(data_dir)
    data.check(spec)
    task = data.task(spec.task)
    splits = data.optimize_splits(spec.task, spec.split_seed)
    if optimizer is None:
        optimizer = spec_optimizer(spec)
    say = (lambda text: progress(ProgressEvent(text=text))) if progress is not None else (lambda _text: None)
    ctx = OptimizeContext.create(
        scorer=evaluate, task_model=task_model, optimizer_model=optimizer_model, gradient_model=gradient_model,
        budget=spec.budget or Budget(), seed=spec.seed, position=spec.position, max_new_tokens=spec.max_new_tokens,
        primary_reading=spec.primary_reading, steps_path=folder.path / "steps.jsonl", progress=say,
        length_penalty=spec.length_penalty,
    )
    with folder.running():
        if not (folder.path / "spec.json").exists():
            folder.start(split_rule=splits.rule, generator=task_model.identity, optimizer_config=_config_dict(optimizer),
                         **torch_device(gradient_model, task_model))
        result = optimizer.optimize(task, splits.train, splits.dev, ctx)
        ctx.tick()
        best = result.best.text
        dev = result.meta.get("dev_accuracy")
        started, eval_rows = time.perf_counter(), 0
        if dev is None:
            dev_result = evaluate_on(task, splits.dev, best, task_model, spec, progress=progress, what="dev")
            dev, eval_rows = dev_result.accuracy, len(dev_result.examples)
        test = evaluate_on(task, splits.test, best, task_model, spec, limit=spec.limit, progress=progress, what="test")
        ref = evaluate_on(task, splits.test, ZERO_SHOT_COT, task_model, spec, limit=spec.limit, progress=progress,
                          what="test, zero-shot CoT")
        evaluation = {"rows": eval_rows + len(test.examples) + len(ref.examples),  # what the dry run prices
                      "seconds": round(time.perf_counter() - started, 2)}
        summary = {
            "task": spec.task, "model": spec.model, "method": spec.method, "preset": spec.preset, "seed": spec.seed,
            "prompt": best, "dev_accuracy": dev, "test_accuracy": test.accuracy, "primary": test.primary,
            "test": test.summary(), "zero_shot_cot_test_accuracy": ref.accuracy,
            "generator": task_model.identity,  # the decoding engine, e.g. vllm:...; gradients (if any) are HF's
            "gradient_model": gradient_model.identity if gradient_model is not None else None,
            "cost": ctx.cost.to_dict(), "evaluation": evaluation, "candidates": [c.text for c in result.candidates],
            "meta": dict(result.meta),
            "leakage": leakage(best, splits),  # the longest word run the prompt shares with the task's rows
            "ran_on": placement or {},  # where it ran (executor, node, worker): not part of the run id
        }
        folder.finish(summary, test.examples)
    return folder.summary()


def evaluate_on(
    task: Task, examples: Any, instruction: str | None, generator: Generator, spec: RunSpec, limit: int | None = None,
    progress: Progress | None = None, what: str = "",
) -> EvalResult:
    """Score `instruction` on `examples` (the first `limit`) under `spec`'s decoding; `progress` gets the counts
    with each phase named after `what` ("test reasoning")."""
    rows: list[Example] = list(examples)[:limit] if limit else list(examples)
    tick = None
    if progress is not None:
        tick = lambda e: progress(dataclasses.replace(e, phase=f"{what} {e.phase}".strip()))  # noqa: E731
    return evaluate(
        task, rows, instruction, generator, position=spec.position, max_new_tokens=spec.max_new_tokens,
        primary=spec.primary_reading, seed=spec.seed, progress=tick,
    )


def _config_dict(optimizer: Any) -> dict[str, Any]:
    cfg = getattr(optimizer, "config", None)
    return dataclasses.asdict(cfg) if cfg is not None and dataclasses.is_dataclass(cfg) else {}


def torch_device(*generators: Any) -> dict[str, str]:
    """{"device": ...}: the torch device of the first HF model among `generators` (a CachedGenerator wraps one),
    or {} when none is HF. Provenance for spec.json: run ids do not depend on it (cache keys do, through the
    identity, when it is not the CPU)."""
    for gen in generators:
        device = getattr(getattr(gen, "inner", gen), "device", None)
        if device:
            return {"device": str(device)}
    return {}
