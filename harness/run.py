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
    folder.start(split_rule=splits.rule, generator=generator.identity)
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
