"""Reading run folders into `CellRecord`s: the only part of the reports that touches files.

`load_records(results_dir)` turns every finished run folder into a `CellRecord` (a corrupt or truncated record
file is an error naming the file); `with_leakage(records, data)` adds the leakage check
(`harness.evaluation.prompt_checks`) to records written before runs stored it, from the task data. Every other
report is a pure function of the records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.records import PREDICTIONS, SUMMARY, RunRecord, StepRecord, SummaryRecord, iter_runs, load_run
from harness.core.types import BenchError


@dataclass(frozen=True, kw_only=True)
class CellRecord:
    """One finished run: an optimize cell, or a transfer evaluation of a stored prompt on another model."""

    run_id: str
    kind: str  # "optimize" or "eval" (transfer)
    method: str
    task: str
    model: str  # the model the prompt was scored on
    source_model: str  # the model it was optimized on (== model for optimize cells)
    seed: int
    preset: str
    prompt: str | None
    accuracy: float
    ci95: tuple[float, float]
    n: int
    primary: str
    dev_accuracy: float | None = None
    zs_cot_accuracy: float | None = None
    cost: Mapping[str, float] = field(default_factory=dict)
    correct: Mapping[str, bool] = field(default_factory=dict)  # example id -> correct (primary reading)
    readings: Mapping[str, float] = field(default_factory=dict)  # reading -> test accuracy (primary included)
    majority: float | None = None  # accuracy of always giving the test split's most frequent answer
    steps: tuple[StepRecord, ...] = ()  # without their resume state
    source_run: str | None = None
    dev_n: int | None = None  # examples behind dev_accuracy (None: unknown)
    dev_by_method: bool = False  # the method reported its own dev accuracy (else the runner scored the full dev split)
    reasoning_tokens: float | None = None  # mean reasoning tokens the prompt induced on the test rows
    leakage: Mapping[str, Any] | None = None  # `harness.evaluation.prompt_checks.leakage` of the prompt (None: not known)
    length_penalty: float = 0.0  # the run's selection length penalty (RunSpec.length_penalty)
    split_seed: int | None = None


# ------------------------------------------------------------------------------------------ reading


def load_record(folder: Path, *, steps: bool = True) -> CellRecord | None:
    """The record of one finished run folder; None for unfinished folders and plain `bench eval` runs."""
    if not (folder / SUMMARY).exists():
        return None
    return cell_record(load_run(folder, steps=steps, predictions=True))


def cell_record(run: RunRecord) -> CellRecord | None:
    """The `CellRecord` of a finished run (None: unfinished, or a plain `bench eval` run)."""
    try:
        return _cell_record(run)
    except (KeyError, TypeError, ValueError) as e:
        raise BenchError(f"malformed record in {run.path} ({type(e).__name__}: {e}): delete the run folder and re-run") from None


def _cell_record(run: RunRecord) -> CellRecord | None:
    spec, summary, test = run.spec.spec, run.summary, run.test
    if run.spec.legacy:
        raise BenchError(f"{run.path} was written before typed run specs: run `bench migrate {run.path.parent}` once")
    source = spec.get("source") or {}
    if summary is None or test is None or (run.kind == "eval" and not source):
        return None
    optimize = isinstance(summary, SummaryRecord)
    primary, n = summary.primary if optimize else test.primary, int(test.n)
    correct: dict[str, bool] = {}
    if run.predictions is not None:  # per-example files stay out of git; summary.json keeps a compact copy
        if len(run.predictions) != n:
            raise BenchError(f"truncated record {run.path / PREDICTIONS}: {len(run.predictions)} examples, "
                             f"summary.json says {n}; delete the run folder and re-run")
        correct = {str(r.id): r.correct(primary) for r in run.predictions}
    else:  # the compact copy kept in git
        correct = summary.correct(primary) or {}
    lo, hi = test.readings[primary]["ci95"]
    return CellRecord(
        run_id=run.run_id, kind=run.kind, method=spec["method"], task=spec["task"], model=spec["model"],
        source_model=spec["model"] if optimize else source.get("model", "?"), seed=int(spec["seed"]),
        preset=str((spec.get("preset") if optimize else source.get("preset")) or "?"), prompt=run.prompt,
        accuracy=float(summary.test_accuracy if optimize else test.accuracy), ci95=(lo, hi), n=n, primary=primary,
        dev_accuracy=summary.dev_accuracy if optimize else None,
        zs_cot_accuracy=summary.get("zero_shot_cot_test_accuracy"), cost=summary.get("cost") or {}, correct=correct,
        steps=tuple(s.logged() for s in run.steps or ()), source_run=source.get("run"),
        readings={k: float(v["accuracy"]) for k, v in test.readings.items() if v.get("accuracy") is not None},
        majority=(test.majority or {}).get("accuracy"), dev_n=_dev_n(summary, n) if optimize else None,
        dev_by_method=optimize and (summary.meta or {}).get("dev_accuracy") is not None,
        reasoning_tokens=test.mean_reasoning_tokens, leakage=summary.leakage if optimize else None,
        length_penalty=float(spec.get("length_penalty") or 0.0), split_seed=spec.get("split_seed"),
    )


def _dev_n(summary: SummaryRecord, n_test: int) -> int | None:
    """How many dev examples `dev_accuracy` is over: the method's own count (`meta.dev_n`), else the runner's dev
    evaluation (its rows are what the evaluation counted beyond the two test runs)."""
    meta = summary.meta or {}
    if meta.get("dev_n"):
        return int(meta["dev_n"])
    rows = (summary.evaluation or {}).get("rows")
    extra = int(rows) - 2 * n_test if rows is not None else 0
    return extra if extra > 0 else None


def load_records(results_dir: str | Path, *, steps: bool = True) -> list[CellRecord]:
    """Every finished optimize cell and transfer evaluation under `results_dir`, in run-id order."""
    records = (cell_record(run) for run in iter_runs(results_dir, steps=steps, predictions=True))
    return [r for r in records if r is not None]


def with_leakage(records: Iterable[CellRecord], data: Any) -> list[CellRecord]:
    """`records` with what older records lack filled in from the task data (`data`: a `harness.runner.data.RunData`,
    the splits the run used): the leakage check, and the dev size when the runner scored the full dev split. A task
    whose data cannot be loaded here (a custom file elsewhere, no data folder) keeps `leakage=None`: shown as
    unknown, never as clean."""
    from harness.evaluation.prompt_checks import leakage

    out = []
    found: dict[tuple[str, int | None], Any] = {}  # (task, split seed) -> splits, or None: not loadable here (tried once)
    for r in records:
        if r.kind == "optimize" and (r.leakage is None or (r.dev_n is None and not r.dev_by_method)):
            key = (r.task, r.split_seed)
            if key not in found:
                try:
                    found[key] = data.splits(r.task, r.split_seed)
                except (BenchError, OSError):
                    found[key] = None
            splits = found[key]
            if splits is not None:
                r = dataclasses.replace(r, leakage=r.leakage if r.leakage is not None else leakage(r.prompt, splits),
                                        dev_n=r.dev_n if r.dev_n is not None or r.dev_by_method else len(splits.dev))
        out.append(r)
    return out
