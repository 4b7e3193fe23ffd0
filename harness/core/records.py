"""What a run folder holds, as typed records, and the one loader every reader uses.

A run folder (`<results>/<run id>/`, written by `harness.runner.records.RunFolder`) holds:
- `spec.json`: a `SpecRecord`, the frozen `RunSpec` (its hash is the run id) plus provenance;
- `summary.json`, written last (its presence marks a finished run): a `SummaryRecord` for an optimize run, an
  `EvaluationRecord` for an eval run (the same record an optimize summary keeps of its test split as `test`);
- `steps.jsonl`: one `StepRecord` per optimization step (optimize runs; a resumed run continues from the last);
- `predictions.jsonl`: one `PredictionRecord` per scored example (kept out of git; summary.json keeps a
  compact copy of the per-example correctness).

Every record carries the schema version `SCHEMA_VERSION`. A record's typed fields are the keys this version
names; every other key is kept in `extra` and the order the keys were written in in `keys`, so
`from_dict(d).to_dict() == d` key for key and in order, and writing a record read from disk back with the
same writer (`write_run`) reproduces the file byte for byte (tests/test_records.py checks it on results/).

`load_run(folder)` reads one folder into a `RunRecord`, `iter_runs(results)` every folder of a results
folder; a missing, corrupt or truncated file, or one of another schema, is one `BenchError` line naming it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from harness.core.io import atomic_write_json, atomic_write_text, dumps, read_json, read_jsonl
from harness.core.spec import RunSpec
from harness.core.types import SCHEMA_VERSION, BenchError

# The results folder a command reads and writes when none is given (BENCH_RESULTS overrides it in the CLI): the
# user's own runs, kept apart from the committed reference set in the repository's results/ (`REFERENCE_RESULTS`).
DEFAULT_RESULTS = Path("bench-results")
REFERENCE_RESULTS = Path(__file__).resolve().parents[2] / "results"
SPEC, SUMMARY, STEPS, PREDICTIONS = "spec.json", "summary.json", "steps.jsonl", "predictions.jsonl"

R = TypeVar("R", bound="Record")


@dataclass(frozen=True, kw_only=True)
class Record:
    """A JSON record: typed fields for the keys its schema names, `extra` for every other key (kept as read),
    `keys` for the keys as written, in order. `to_dict` writes those keys in that order (a null read stays
    null), then every other field that is set (not None; for a record read, not its default either: set since),
    in field order, then the rest of `extra`."""

    schema: int | None = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    NESTED: ClassVar[Mapping[str, type[Record]]] = {}  # key -> the record type its (non-null) value is

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "keys"))

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        """The record of `d`; a required key missing is a TypeError, a value of the wrong shape a
        TypeError/ValueError (callers name the file)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"expected a JSON object, got {type(d).__name__}")
        names = set(cls.names())
        known = {k: cls.NESTED[k].from_dict(v) if k in cls.NESTED and v is not None else v
                 for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names}, keys=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        values = {n: getattr(self, n) for n in self.names()}
        values = {n: v.to_dict() if isinstance(v, Record) else v for n, v in values.items()}
        out = {k: values[k] if k in values else self.extra[k] for k in self.keys if k in values or k in self.extra}
        defaults = {f.name: f.default for f in dataclasses.fields(self)} if self.keys else {}
        out.update((n, v) for n, v in values.items() if n not in out and v is not None and v != defaults.get(n))
        out.update((k, v) for k, v in self.extra.items() if k not in out)
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """A key this schema version does not name (kept in `extra`), or a field by its name."""
        return getattr(self, key) if key in self.names() else self.extra.get(key, default)


# ------------------------------------------------------------------------------------------ the records


@dataclass(frozen=True, kw_only=True)
class SpecRecord(Record):
    """spec.json: the run spec (as written: a version-1 spec with its untyped `extra` reads too, for
    `bench migrate`) and the run's provenance."""

    run_id: str
    spec: Mapping[str, Any]
    command: str | None = None
    created: str | None = None
    generator: str | None = None
    device: str | None = None  # where an HF model ran (older records: cpu)
    spec_version: int | None = None
    migrated_from: str | None = None
    versions: Mapping[str, str] | None = None
    threads: Mapping[str, Any] | None = None

    @property
    def legacy(self) -> bool:
        """A version-1 spec (untyped `extra`): `bench migrate` rewrites it."""
        return "extra" in self.spec

    @property
    def run_spec(self) -> RunSpec:
        return RunSpec.from_dict(self.spec)

    @property
    def kind(self) -> str:
        return str(self.spec["kind"])


@dataclass(frozen=True, kw_only=True)
class EvaluationRecord(Record):
    """One prompt scored on one split: an eval run's summary.json, and the `test` of an optimize summary."""

    n: int
    readings: Mapping[str, Mapping[str, Any]]  # reading -> accuracy, ci95, ...
    primary: str | None = None  # the reading `accuracy` is of (optimize summaries also name it at the top)
    accuracy: float | None = None  # the primary reading's
    run_id: str | None = None  # eval runs only (summary.json)
    task: str | None = None
    model: str | None = None
    split: str | None = None
    instruction: str | None = None
    majority: Mapping[str, Any] | None = None  # always giving the split's most frequent answer
    mean_reasoning_tokens: float | None = None
    per_example: Mapping[str, Any] | None = None  # eval runs: ids and "1"/"0" per reading

    def correct(self, reading: str) -> dict[str, bool] | None:
        """Example id -> correct under `reading`, from the compact copy; None when it has none."""
        compact = self.per_example or {}
        if reading not in compact:
            return None
        return {i: c == "1" for i, c in zip(compact["ids"], compact[reading])}


@dataclass(frozen=True, kw_only=True)
class SummaryRecord(Record):
    """An optimize run's summary.json: the prompt found, its test evaluation, dev accuracy and the cost."""

    run_id: str
    test: EvaluationRecord
    test_accuracy: float | None
    primary: str
    method: str | None = None
    prompt: str | None = None
    task: str | None = None
    model: str | None = None
    seed: int | None = None
    preset: str | None = None
    dev_accuracy: float | None = None
    zero_shot_cot_test_accuracy: float | None = None
    cost: Mapping[str, float] | None = None
    evaluation: Mapping[str, Any] | None = None  # the final dev/test evaluations' rows and seconds
    meta: Mapping[str, Any] | None = None  # what the method reported (dev_accuracy, dev_n, ...)
    leakage: Mapping[str, Any] | None = None
    per_example: Mapping[str, Any] | None = None

    NESTED: ClassVar[Mapping[str, type[Record]]] = {"test": EvaluationRecord}

    def correct(self, reading: str) -> dict[str, bool] | None:
        return EvaluationRecord(n=0, readings={}, per_example=self.per_example).correct(reading)


@dataclass(frozen=True, kw_only=True)
class StepRecord(Record):
    """One line of steps.jsonl: what a method logged at one step (its own keys are in `extra`), the cost
    meter so far, and the state and RNG a resumed run restarts from."""

    step: int
    method: str | None = None
    phase: str | None = None
    train_accuracy: float | None = None  # the curve keys every method logs (`OptimizeContext.log_step`)
    dev_accuracy: float | None = None
    selection_score: float | None = None  # what the method selects by, when it logs it
    cost: Mapping[str, float] | None = None
    state: Any = None
    rng: Any = None

    def logged(self) -> StepRecord:
        """The record without the resume state (what reports show)."""
        return dataclasses.replace(self, state=None, rng=None, keys=tuple(k for k in self.keys if k not in ("state", "rng")))


@dataclass(frozen=True, kw_only=True)
class PredictionRecord(Record):
    """One line of predictions.jsonl: one scored example (each reading's answer and `<reading>_correct`)."""

    id: Any
    input: str | None = None
    reasoning: str | None = None
    gold: str | None = None

    def correct(self, reading: str) -> bool:
        return bool(self.get(f"{reading}_correct"))


Summary = SummaryRecord | EvaluationRecord


# ------------------------------------------------------------------------------------------ the loader


@dataclass(frozen=True)
class RunRecord:
    """One run folder as read: its spec, its summary (None: unfinished), and, when asked for, its steps and
    predictions (None: the file is absent, or was not read)."""

    path: Path
    spec: SpecRecord
    summary: Summary | None
    steps: tuple[StepRecord, ...] | None = None
    predictions: tuple[PredictionRecord, ...] | None = None

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def test(self) -> EvaluationRecord | None:
        """The evaluation on held-out examples: an optimize run's `test`, an eval run's summary."""
        return self.summary.test if isinstance(self.summary, SummaryRecord) else self.summary

    @property
    def prompt(self) -> str | None:
        """The prompt the run scored: the best prompt found (optimize) or the spec's (eval)."""
        if self.kind == "optimize":
            return self.summary.prompt if isinstance(self.summary, SummaryRecord) else None
        return self.spec.spec.get("prompt")


def _record(cls: type[R], path: Path, obj: Any) -> R:
    found = obj.get("schema") if isinstance(obj, Mapping) else "?"
    if found != SCHEMA_VERSION:
        raise BenchError(f"record {path} has schema {found}, expected {SCHEMA_VERSION}")
    try:
        return cls.from_dict(obj)
    except (KeyError, TypeError, ValueError) as e:
        raise BenchError(f"malformed record {path} ({type(e).__name__}: {e}): restore it or delete the run folder, "
                         "and re-run") from None


def read_spec(folder: Path) -> SpecRecord:
    path = Path(folder) / SPEC
    rec = _record(SpecRecord, path, read_json(path))
    if not isinstance(rec.spec, Mapping) or "kind" not in rec.spec:
        raise BenchError(f"malformed record {path} (no spec or run id): restore it or move the folder out")
    return rec


def read_summary(folder: Path, kind: str) -> Summary:
    path = Path(folder) / SUMMARY
    return _record(SummaryRecord if kind == "optimize" else EvaluationRecord, path, read_json(path))


def read_lines(cls: type[R], path: Path, *, torn_tail_ok: bool = False) -> tuple[R, ...]:
    """The records of a JSON-lines file (steps.jsonl, predictions.jsonl)."""
    rows = read_jsonl(path, torn_tail_ok=torn_tail_ok)
    return tuple(_record(cls, path, r) for r in rows)


def load_run(folder: str | Path, *, steps: bool = False, predictions: bool = False) -> RunRecord:
    """The records of one run folder. `steps`/`predictions`: read those files too (when present)."""
    folder = Path(folder)
    spec = read_spec(folder)
    summary = read_summary(folder, spec.kind) if (folder / SUMMARY).exists() else None
    step_rows = read_lines(StepRecord, folder / STEPS) if steps and (folder / STEPS).exists() else None
    pred_rows = read_lines(PredictionRecord, folder / PREDICTIONS) if predictions and (folder / PREDICTIONS).exists() else None
    return RunRecord(folder, spec, summary, step_rows, pred_rows)


def run_folders(results: str | Path, *, finished: bool = True) -> list[Path]:
    """The run folders of a results folder, by name: those with summary.json (`finished`), else also those with
    only spec.json (a run under way or interrupted)."""
    root = Path(results)
    if not root.is_dir():
        raise BenchError(f"no results folder {root}: run `bench run` first or pass --results")
    marks = (SUMMARY,) if finished else (SUMMARY, SPEC)
    return sorted(p for p in root.iterdir() if any((p / m).is_file() for m in marks))


def iter_runs(results: str | Path, *, finished: bool = True, steps: bool = False,
              predictions: bool = False) -> Iterator[RunRecord]:
    """`load_run` of every run folder under `results` (`finished`: only finished ones), in run-id order."""
    for folder in run_folders(results, finished=finished):
        yield load_run(folder, steps=steps, predictions=predictions)


# ------------------------------------------------------------------------------------------ writing


def write_lines(path: Path, records: tuple[Record, ...] | list[Record]) -> None:
    atomic_write_text(path, "".join(dumps(r.to_dict()) + "\n" for r in records))


def write_run(run: RunRecord, folder: str | Path | None = None) -> Path:
    """Write `run`'s records into `folder` (default: where they were read from), each file atomically, in the
    format the runner writes them: what `load_run` read is written back byte for byte."""
    folder = Path(folder) if folder is not None else run.path
    atomic_write_json(folder / SPEC, run.spec.to_dict())
    if run.steps is not None:
        write_lines(folder / STEPS, run.steps)
    if run.predictions is not None:
        write_lines(folder / PREDICTIONS, run.predictions)
    if run.summary is not None:  # last: its presence marks a finished run
        atomic_write_json(folder / SUMMARY, run.summary.to_dict())
    return folder
