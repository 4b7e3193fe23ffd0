"""Library entry points (the CLI is a thin wrapper): evaluate an instruction on a task from a RunSpec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.evaluate import ProgressFn, evaluate
from harness.records import RunFolder
from harness.types import BenchError, Generator, RunSpec

DEFAULT_RESULTS = Path("results")


def run_eval(
    spec: RunSpec,
    generator: Generator,
    *,
    data_dir: str | Path | None = None,
    out: str | Path = DEFAULT_RESULTS,
    progress: ProgressFn | None = None,
    skip_finished: bool = True,
) -> dict[str, Any]:
    """Evaluate `spec.prompt` on `spec.task`'s `spec.split`; write the run folder; return the summary.

    A finished run folder with the same spec (hence the same run id) is read back instead of recomputed.
    """
    from tasks import get_task

    if spec.kind != "eval":
        raise ValueError("run_eval takes an eval spec")
    task = get_task(spec.task)
    folder = RunFolder(Path(out), spec)
    if skip_finished and folder.finished:
        return folder.summary()
    splits = task.load(data_dir=data_dir, seed=spec.split_seed)
    examples = list(splits.get(spec.split))
    if spec.limit is not None:
        examples = examples[: spec.limit]
    if not examples:
        raise BenchError(f"split {spec.split!r} of {spec.task} is empty: choose another split or data file")
    folder.start(split_rule=splits.rule, generator=generator.identity, **torch_device(generator))
    result = evaluate(
        task,
        examples,
        spec.prompt,
        generator,
        position=spec.position,
        max_new_tokens=spec.max_new_tokens,
        primary=spec.primary_reading,
        seed=spec.seed,
        progress=progress,
    )
    summary = {**result.summary(), "split": spec.split, "model": spec.model, "generator": generator.identity}
    folder.finish(summary, result.examples)
    return folder.summary()


from baselines.fixed import ZERO_SHOT_COT  # noqa: E402  (the reference row)


def run_optimize(
    spec: RunSpec,
    task_model: Generator,
    *,
    optimizer_model: Generator | None = None,
    gradient_model: Any = None,
    data_dir: str | Path | None = None,
    out: str | Path = DEFAULT_RESULTS,
    progress: Any = None,
    optimizer: Any = None,
) -> dict[str, Any]:
    """Optimize a prompt for `spec.task`, then score the best prompt (and zero-shot CoT) on dev and test.

    The run folder gets `steps.jsonl` as the method goes (so a crashed run resumes from its last completed
    step), then `predictions.jsonl` (test, per example) and `summary.json` (its presence: finished).
    `spec.extra` carries `preset` and config overrides for the method.
    """
    from harness.methods import make_optimizer
    from harness.optimize import OptimizeContext
    from tasks import get_task

    if spec.kind != "optimize":
        raise ValueError("run_optimize takes an optimize spec")
    task = get_task(spec.task)
    folder = RunFolder(Path(out), spec)
    if folder.finished:
        return folder.summary()
    splits = task.load(data_dir=data_dir, seed=spec.split_seed)
    for name in ("train", "dev", "test"):
        if not splits.get(name):
            raise BenchError(f"split {name!r} of {spec.task} is empty: optimization needs train, dev and test rows")
    extra = dict(spec.extra)
    preset = extra.pop("preset", "cpu")
    budget = extra.pop("budget", None) or {}
    for key in ("optimizer_model", "optimizer_backend", "base_url"):  # recorded in the spec; the model is passed in
        extra.pop(key, None)
    if optimizer is None:
        optimizer = make_optimizer(spec.method, preset=preset, **extra)
    from harness.types import Budget

    ctx = OptimizeContext.create(
        task_model=task_model, optimizer_model=optimizer_model, gradient_model=gradient_model,
        budget=Budget(**budget), seed=spec.seed, position=spec.position, max_new_tokens=spec.max_new_tokens,
        primary_reading=spec.primary_reading, steps_path=folder.path / "steps.jsonl",
        progress=progress or (lambda _m: None),
    )
    if not (folder.path / "spec.json").exists():
        folder.start(split_rule=splits.rule, generator=task_model.identity, optimizer_config=_config_dict(optimizer),
                     **torch_device(gradient_model, task_model))
    result = optimizer.optimize(task, splits.train, splits.dev, ctx)
    ctx.tick()
    best = result.best.text
    dev = result.meta.get("dev_accuracy")
    if dev is None:
        dev = evaluate_on(task, splits.dev, best, task_model, spec).accuracy
    test = evaluate_on(task, splits.test, best, task_model, spec, limit=spec.limit)
    ref = evaluate_on(task, splits.test, ZERO_SHOT_COT, task_model, spec, limit=spec.limit)
    summary = {
        "task": spec.task, "model": spec.model, "method": spec.method, "preset": preset, "seed": spec.seed,
        "prompt": best, "dev_accuracy": dev, "test_accuracy": test.accuracy, "primary": test.primary,
        "test": test.summary(), "zero_shot_cot_test_accuracy": ref.accuracy,
        "generator": task_model.identity,  # the decoding engine, e.g. vllm:...; gradients (if any) are HF's
        "gradient_model": getattr(gradient_model, "identity", None),
        "cost": ctx.cost.to_dict(), "candidates": [c.text for c in result.candidates],
        "meta": dict(result.meta),
    }
    folder.finish(summary, test.examples)
    return folder.summary()


def evaluate_on(task: Any, examples: Any, instruction: str | None, generator: Generator, spec: RunSpec, limit: int | None = None) -> Any:
    rows = list(examples)[:limit] if limit else list(examples)
    return evaluate(
        task, rows, instruction, generator, position=spec.position, max_new_tokens=spec.max_new_tokens,
        primary=spec.primary_reading, seed=spec.seed,
    )


def _config_dict(optimizer: Any) -> dict[str, Any]:
    import dataclasses

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
