"""Reports are pure functions of the stored records: the leaderboard, optimization curves, transfer tables.

`load_records(results_dir)` is the only function that reads files: it turns every finished run folder into a
`CellRecord` (a corrupt or truncated record file is an error naming the file). Everything else takes records
and returns a pandas DataFrame or text, so a report is regenerated, never edited.

Leaderboard rows are keyed by (preset, model, task, method); `task == "average"` rows average over the tasks
every method of that (preset, model) has. Columns:
  seeds, accuracy, ci_low, ci_high (95%: t interval over seeds when there are several, else the run's own
  bootstrap interval), dev_accuracy, zs_cot_in_cell (each cell's zero-shot-CoT test accuracy), n_test,
  delta_vs_zs_cot / delta_lo / delta_hi (paired bootstrap over the same test examples), p_vs_zs_cot and
  p_vs_greater (exact sign test of per-example correctness averaged over common seeds; with one seed this is
  the exact McNemar test), primary (the reading `accuracy` uses), greedy_accuracy, options_accuracy and
  fallback_accuracy (the same test runs read each way; NaN where a reading does not apply), tokens, calls,
  task_tokens, optimizer_tokens, forward_passes, backward_passes, unparseable, wall_seconds (means per cell).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.io import read_jsonl
from harness.core.types import READINGS, SCHEMA_VERSION, BenchError
from harness.evaluation.stats import mean_interval, paired_bootstrap, sign_test, stratified_bootstrap_ci

REFERENCE = "zs-cot"
BASELINE = "greater"
IN_CELL = "zs-cot (in-cell)"  # the reference row built from each cell's zero_shot_cot_test_accuracy
MAJORITY = "majority class"  # always giving the test split's most frequent answer (closed answer sets)


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
    steps: tuple[Mapping[str, Any], ...] = ()
    source_run: str | None = None


# ------------------------------------------------------------------------------------------ reading


def read_json_record(path: Path) -> dict[str, Any]:
    """A run folder's JSON file (spec.json, summary.json), checked for its schema version."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"missing record {path}: the run folder is incomplete; delete it and re-run") from None
    except json.JSONDecodeError:
        raise BenchError(f"corrupt or truncated record {path}: delete the run folder and re-run") from None
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA_VERSION:
        found = obj.get("schema") if isinstance(obj, dict) else "?"
        raise BenchError(f"record {path} has schema {found}, expected {SCHEMA_VERSION}")
    return obj


def load_record(folder: Path, *, steps: bool = True) -> CellRecord | None:
    """The record of one finished run folder; None for unfinished folders and plain `bench eval` runs."""
    if not (folder / "summary.json").exists():
        return None
    try:
        return _load_record(folder, steps)
    except (KeyError, TypeError, ValueError) as e:
        raise BenchError(f"malformed record in {folder} ({type(e).__name__}: {e}): delete the run folder and re-run") from None


def _load_record(folder: Path, steps: bool) -> CellRecord | None:
    meta, summary = read_json_record(folder / "spec.json"), read_json_record(folder / "summary.json")
    spec = meta["spec"]
    if "extra" in spec:
        raise BenchError(f"{folder} was written before typed run specs: run `bench migrate {folder.parent}` once")
    source = spec.get("source") or {}
    if spec["kind"] == "eval" and not source:
        return None
    correct: dict[str, bool] = {}
    pred_path = folder / "predictions.jsonl"
    if spec["kind"] == "optimize":
        test, primary = summary["test"], summary["primary"]
    else:
        test, primary = summary, summary["primary"]
    n = int(test["n"])
    if pred_path.exists():  # per-example files stay out of git; summary.json keeps a compact copy
        rows = read_jsonl(pred_path)
        if len(rows) != n:
            raise BenchError(
                f"truncated record {pred_path}: {len(rows)} examples, summary.json says {n}; delete the run folder and re-run"
            )
        correct = {str(r["id"]): bool(r[f"{primary}_correct"]) for r in rows}
    elif primary in (summary.get("per_example") or {}):  # the compact copy kept in git
        compact = summary["per_example"]
        correct = {i: c == "1" for i, c in zip(compact["ids"], compact[primary])}
    step_rows: tuple[dict[str, Any], ...] = ()
    if steps and (folder / "steps.jsonl").exists():
        rows = read_jsonl(folder / "steps.jsonl")
        step_rows = tuple({k: v for k, v in r.items() if k not in ("state", "rng")} for r in rows)
    lo, hi = test["readings"][primary]["ci95"]
    optimize = spec["kind"] == "optimize"
    return CellRecord(
        run_id=meta["run_id"], kind=spec["kind"], method=spec["method"], task=spec["task"], model=spec["model"],
        source_model=spec["model"] if optimize else source.get("model", "?"), seed=int(spec["seed"]),
        preset=str((spec.get("preset") if optimize else source.get("preset")) or "?"),
        prompt=summary.get("prompt") if optimize else spec.get("prompt"),
        accuracy=float(summary["test_accuracy"] if optimize else summary["accuracy"]), ci95=(lo, hi), n=n,
        primary=primary, dev_accuracy=summary.get("dev_accuracy") if optimize else None,
        zs_cot_accuracy=summary.get("zero_shot_cot_test_accuracy"), cost=summary.get("cost") or {},
        correct=correct, steps=step_rows, source_run=source.get("run"),
        readings={k: float(v["accuracy"]) for k, v in test["readings"].items() if v.get("accuracy") is not None},
        majority=(test.get("majority") or {}).get("accuracy"),
    )


def load_records(results_dir: str | Path, *, steps: bool = True) -> list[CellRecord]:
    """Every finished optimize cell and transfer evaluation under `results_dir`, in run-id order."""
    root = Path(results_dir)
    if not root.is_dir():
        raise BenchError(f"no results folder {root}: run `bench run` first or pass --results")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        rec = load_record(folder, steps=steps)
        if rec is not None:
            out.append(rec)
    return out


# ------------------------------------------------------------------------------------------ leaderboard

COST_KEYS = (
    "task_tokens", "optimizer_tokens", "tokens", "calls", "forward_passes", "backward_passes", "unparseable", "wall_seconds",
    "cached_share",
)


def cost_summary(cost: Mapping[str, float]) -> dict[str, float]:
    g = lambda k: float(cost.get(k, 0) or 0)
    task, opt = g("task_tokens_in") + g("task_tokens_out"), g("optimizer_tokens_in") + g("optimizer_tokens_out")
    return {"task_tokens": task, "optimizer_tokens": opt, "tokens": task + opt,
            "calls": g("task_calls") + g("optimizer_calls"), "forward_passes": g("forward_passes"), "backward_passes": g("backward_passes"),
            "unparseable": g("unparseable"), "wall_seconds": g("wall_seconds"), "cached_share": _cached_share(cost)}


def _cached_share(cost: Mapping[str, float]) -> float:
    """The share of a cell's model calls the response cache answered (its wall time then is not the work's).

    Records from before `cached_calls` existed: 1.0 when calls were made in under a second of wall time (they
    can only have been replayed), else 0.0 (their wall times are in line with computed work)."""
    calls = float(cost.get("task_calls", 0) or 0) + float(cost.get("optimizer_calls", 0) or 0)
    if not calls:
        return 0.0
    if "cached_calls" in cost:
        return float(cost["cached_calls"]) / calls
    return 1.0 if float(cost.get("wall_seconds", 0) or 0) < 1.0 else 0.0


def method_order(methods: Iterable[str]) -> list[str]:
    """The majority class and the zero-shot-CoT reference first, then GReaTer, then the rest alphabetically."""
    rank = {MAJORITY: -1, REFERENCE: 0, IN_CELL: 1, BASELINE: 2}
    return sorted(set(methods), key=lambda m: (rank.get(m, 3), m))


def _by_seed(records: Sequence[CellRecord], what: str) -> dict[int, CellRecord]:
    out: dict[int, CellRecord] = {}
    for r in records:
        if r.seed in out:
            raise BenchError(
                f"two runs of {what} with seed {r.seed}: {out[r.seed].run_id} and {r.run_id}; keep one "
                "(different settings belong in different results folders)"
            )
        out[r.seed] = r
    return out


def paired_diffs(a: Mapping[int, CellRecord], b: Mapping[int, CellRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness of two systems averaged over their common seeds, on their common examples."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return np.zeros(0), np.zeros(0)
    ids = sorted(set.intersection(*(set(a[s].correct) & set(b[s].correct) for s in seeds)))
    if not ids:
        return np.zeros(0), np.zeros(0)
    x = np.array([[a[s].correct[i] for i in ids] for s in seeds], dtype=float).mean(axis=0)
    y = np.array([[b[s].correct[i] for i in ids] for s in seeds], dtype=float).mean(axis=0)
    return x, y


def _compare(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"p": math.nan, "delta": math.nan, "lo": math.nan, "hi": math.nan}
    delta, lo, hi, _ = paired_bootstrap(x, y)
    return {"p": sign_test(x - y), "delta": delta, "lo": lo, "hi": hi}


def leaderboard(records: Iterable[CellRecord], *, reference: str = REFERENCE, baseline: str = BASELINE) -> pd.DataFrame:
    """The comparison table (see the module docstring for the columns), from optimize records only."""
    cells: dict[tuple[str, str, str, str], list[CellRecord]] = defaultdict(list)
    for r in records:
        if r.kind == "optimize":
            cells[(r.preset, r.model, r.task, r.method)].append(r)
    groups = {k: _by_seed(v, " / ".join(k)) for k, v in cells.items()}
    rows: list[dict[str, Any]] = []
    for preset, model in sorted({(k[0], k[1]) for k in groups}):
        here = {k[2:]: v for k, v in groups.items() if k[:2] == (preset, model)}
        tasks = sorted({t for t, _ in here})
        methods = method_order(m for _, m in here)
        # reference rows without a run of their own: the majority class, and zero-shot CoT from each cell
        # when no zs-cot cell ran; task -> accuracy, averaged below when every common task has one
        majority: dict[str, float] = {}
        in_cell: dict[str, float] = {}
        for task in tasks:
            runs = [r for (t, _m), by in here.items() if t == task for r in by.values()]
            shares = {r.majority for r in runs if r.majority is not None}
            if len(shares) == 1:  # one test split (different limits or splits: no single majority row)
                majority[task] = shares.pop()
            zs = [r.zs_cot_accuracy for r in runs if r.zs_cot_accuracy is not None]
            if (task, reference) not in here and zs:
                in_cell[task] = float(np.mean(zs))
            rows += [_reference_row(preset, model, task, name, acc[task])
                     for name, acc in ((MAJORITY, majority), (IN_CELL, in_cell)) if task in acc]
            rows += [_row(preset, model, task, m, here, reference, baseline) for m in methods if (task, m) in here]
        common = [t for t in tasks if all((t, m) in here for m in methods)]
        if len(tasks) > 1 and common:
            rows += [_average_row(preset, model, m, common, here, reference, baseline) for m in methods]
            rows += [_reference_row(preset, model, "average", name, float(np.mean([acc[t] for t in common])), len(common))
                     for name, acc in ((MAJORITY, majority), (IN_CELL, in_cell)) if all(t in acc for t in common)]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["tasks"] = df["tasks"].fillna(1).astype(int) if "tasks" in df else 1
    order = {m: i for i, m in enumerate(method_order(df["method"]))}
    df["_avg"] = df["task"] != "average"
    df["_m"] = df["method"].map(order)
    return df.sort_values(["preset", "model", "_avg", "task", "_m"]).drop(columns=["_avg", "_m"]).reset_index(drop=True)


def _reference_row(preset: str, model: str, task: str, method: str, accuracy: float, tasks: int = 1) -> dict[str, Any]:
    """A row with an accuracy and nothing else (no interval, cost or tests): the majority class, in-cell zs-cot."""
    return {"preset": preset, "model": model, "task": task, "method": method, "tasks": tasks, "seeds": 1,
            "accuracy": accuracy, "ci_low": math.nan, "ci_high": math.nan}


def _row(preset: str, model: str, task: str, method: str, here: Mapping, reference: str, baseline: str) -> dict[str, Any]:
    by = here[(task, method)]
    runs = [by[s] for s in sorted(by)]
    if len(runs) > 1:
        acc, lo, hi = mean_interval([r.accuracy for r in runs])
        lo, hi = _wider((lo, hi), stratified_bootstrap_ci([_seed_mean(runs)]))
    else:
        acc, (lo, hi) = runs[0].accuracy, runs[0].ci95
    row: dict[str, Any] = {"preset": preset, "model": model, "task": task, "method": method, "seeds": len(runs),
                           "accuracy": acc, "ci_low": lo, "ci_high": hi, "n_test": runs[0].n, "primary": runs[0].primary}
    for reading in READINGS:  # every reading of the same test runs, beside the primary (the paper's is greedy)
        got = [r.readings[reading] for r in runs if reading in r.readings]
        row[f"{reading}_accuracy"] = float(np.mean(got)) if got else math.nan
    devs = [r.dev_accuracy for r in runs if r.dev_accuracy is not None]
    row["dev_accuracy"] = float(np.mean(devs)) if devs else math.nan
    zs = [r.zs_cot_accuracy for r in runs if r.zs_cot_accuracy is not None]
    row["zs_cot_in_cell"] = float(np.mean(zs)) if zs else math.nan
    costs = [cost_summary(r.cost) for r in runs]
    row.update({k: float(np.mean([c[k] for c in costs])) for k in COST_KEYS})
    for other, col in ((reference, "zs_cot"), (baseline, "greater")):
        if other == method or (task, other) not in here:
            cmp = _compare(np.zeros(0), np.zeros(0))
        else:
            cmp = _compare(*paired_diffs(by, here[(task, other)]))
        row[f"p_vs_{col}"] = cmp["p"]
        if col == "zs_cot":
            row.update(delta_vs_zs_cot=cmp["delta"], delta_lo=cmp["lo"], delta_hi=cmp["hi"])
    return row


def _seed_mean(runs: Sequence[CellRecord]) -> list[float]:
    """Per-example correctness averaged over seeds, on the examples every run has ([] without per-example data)."""
    if not all(r.correct for r in runs):
        return []
    ids = sorted(set.intersection(*(set(r.correct) for r in runs)))
    return [float(np.mean([r.correct[i] for r in runs])) for i in ids]


def _wider(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The wider of two intervals, within [0, 1]. Over several seeds on one fixed test set, the t interval over
    seeds misses the test sampling (identical seeds give a zero-width interval) and the bootstrap over examples
    misses the seed variance: the leaderboard reports whichever is wider."""
    lo = min(x for x in (a[0], b[0]) if not math.isnan(x)) if not (math.isnan(a[0]) and math.isnan(b[0])) else math.nan
    hi = max(x for x in (a[1], b[1]) if not math.isnan(x)) if not (math.isnan(a[1]) and math.isnan(b[1])) else math.nan
    return max(0.0, lo), min(1.0, hi)


def _average_row(
    preset: str, model: str, method: str, tasks: Sequence[str], here: Mapping, reference: str, baseline: str
) -> dict[str, Any]:
    per_task = [_row(preset, model, t, method, here, reference, baseline) for t in tasks]
    seeds = sorted(set.intersection(*(set(here[(t, method)]) for t in tasks)))
    # over the seeds every task has (a grid run in parts has more seeds on some tasks), as the interval and `seeds`
    per_seed = [np.mean([here[(t, method)][s].accuracy for t in tasks]) for s in seeds]
    accuracy = np.mean(per_seed) if seeds else np.mean([r["accuracy"] for r in per_task])
    row: dict[str, Any] = {"preset": preset, "model": model, "task": "average", "method": method, "tasks": len(tasks),
                           "seeds": len(seeds), "accuracy": float(accuracy)}
    if len(seeds) > 1:
        _, lo, hi = mean_interval(per_seed)
        vectors = [_seed_mean([here[(t, method)][s] for s in seeds]) for t in tasks]
        row["ci_low"], row["ci_high"] = _wider((lo, hi), stratified_bootstrap_ci(vectors) if all(vectors) else (lo, hi))
    else:
        s = seeds[0] if seeds else None
        vectors = [list(here[(t, method)][s].correct.values()) for t in tasks] if s is not None else []
        ok = vectors and all(vectors)  # per-example files present for every task
        row["ci_low"], row["ci_high"] = stratified_bootstrap_ci(vectors) if ok else (math.nan, math.nan)
    primaries = {r["primary"] for r in per_task}
    row["primary"] = primaries.pop() if len(primaries) == 1 else "mixed"
    for col in ("dev_accuracy", "zs_cot_in_cell", "n_test", *COST_KEYS, *(f"{r}_accuracy" for r in READINGS)):
        row[col] = float(np.nanmean([r[col] for r in per_task])) if any(not _nan(r[col]) for r in per_task) else math.nan
    for other, col in ((reference, "zs_cot"), (baseline, "greater")):
        pairs = [paired_diffs(here[(t, method)], here[(t, other)]) for t in tasks if other != method and (t, other) in here]
        if len(pairs) == len(tasks):
            x, y = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
            cmp = _compare(x, y)
        else:
            cmp = _compare(np.zeros(0), np.zeros(0))
        row[f"p_vs_{col}"] = cmp["p"]
        if col == "zs_cot":
            row.update(delta_vs_zs_cot=cmp["delta"], delta_lo=cmp["lo"], delta_hi=cmp["hi"])
    return row


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


# ------------------------------------------------------------------------------------------ curves, transfer


CURVE_COLUMNS = ["run_id", "method", "task", "model", "seed", "preset", "step", "train_accuracy", "dev_accuracy"]


def curves(records: Iterable[CellRecord]) -> pd.DataFrame:
    """Optimization curves: one row per logged step with a `train_accuracy` and/or `dev_accuracy`.

    Every method logs these shared keys (see `OptimizeContext.log_step`) from what it scores anyway, each on
    its own examples, so curves show progress within a method rather than levels across methods:
      greater   train: 1 - mistake rate of the step's current prompt (its training examples);
                dev: the best of the final dev selection
      ape       train: the best proposal's score so far (its scoring subset, or the bandit's trials)
      opro      train: the best instruction's score so far (its train subset)
      protegi   train: the bandit's score of the beam's first prompt after each selection (train minibatches)
      textgrad  train: the current instruction's minibatch accuracy;
                dev: the kept instruction's accuracy after each step (the validation revert's dev subset)
      pe2       train: the top beam prompt's accuracy on the train rows it ran looking for failures;
                dev: the best dev accuracy so far (the beam is chosen on dev)
      evoprompt-ga / evoprompt-de  train: the population's best fitness (its fitness split, train by default)
    """
    rows = []
    for r in records:
        for i, s in enumerate(r.steps):
            train, dev = _number(s.get("train_accuracy")), _number(s.get("dev_accuracy"))
            if math.isnan(train) and math.isnan(dev):
                train, dev = _legacy_curve_point(s)
            if not (math.isnan(train) and math.isnan(dev)):
                rows.append({"run_id": r.run_id, "method": r.method, "task": r.task, "model": r.model, "seed": r.seed,
                             "preset": r.preset, "step": i, "train_accuracy": train, "dev_accuracy": dev})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _number(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def _legacy_curve_point(step: Mapping[str, Any]) -> tuple[float, float]:
    """(train, dev) accuracy of a step logged before the shared keys existed: GReaTer's `train_error` and its
    `dev` selection list, APE's and OPRO's `scored` [prompt, score] pairs (the best of them)."""
    train = 1 - _number(step.get("train_error"))
    if math.isnan(train) and isinstance(step.get("scored"), list):
        scores = [_number(p[1]) for p in step["scored"] if isinstance(p, (list, tuple)) and len(p) > 1]
        train = max((x for x in scores if not math.isnan(x)), default=math.nan)
    listed = step.get("dev") if isinstance(step.get("dev"), list) else []
    devs = [_number(d.get("accuracy")) for d in listed if isinstance(d, dict)]
    dev = max((x for x in devs if not math.isnan(x)), default=math.nan)
    return train, dev


def transfer_table(records: Iterable[CellRecord]) -> pd.DataFrame:
    """Test accuracy of each method's prompts optimized on one model and scored on another, per task
    (mean over seeds). The source model's own optimize cells fill the diagonal unless a transfer run did."""
    acc: dict[tuple[str, str, str, str, str], dict[int, float]] = defaultdict(dict)
    for r in records:
        key = (r.preset, r.method, r.task, r.source_model, r.model)
        if r.kind == "eval" or r.seed not in acc[key]:
            acc[key][r.seed] = r.accuracy
    rows = [{"preset": k[0], "method": k[1], "task": k[2], "source_model": k[3], "target_model": k[4],
             "seeds": len(v), "accuracy": float(np.mean(list(v.values())))} for k, v in sorted(acc.items())]
    return pd.DataFrame(rows, columns=["preset", "method", "task", "source_model", "target_model", "seeds", "accuracy"])


def transfer_matrices(records: Iterable[CellRecord]) -> dict[tuple[str, str], pd.DataFrame]:
    """(preset, method) -> source model x target model matrix of test accuracy averaged over tasks.

    Every cell averages the same tasks: those that every (source, target) pair of the matrix has (its
    `attrs["tasks"]`), so a source optimized on fewer tasks does not change what the others' cells mean. With
    no task in common, each cell averages its own tasks (`attrs["tasks"]` is then empty). Only records that
    are part of a transfer (the target differs from the source somewhere) count: a method without transfer
    runs has no matrix.
    """
    table = transfer_table(records)
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for (preset, method), g in table.groupby(["preset", "method"], sort=True):
        if (g["source_model"] == g["target_model"]).all():
            continue
        per_task = g.pivot_table(index=["source_model", "target_model"], columns="task", values="accuracy")
        common = [t for t in per_task.columns if per_task[t].notna().all()]
        mean = per_task[common or list(per_task.columns)].mean(axis=1).rename("accuracy").reset_index()
        m = mean.pivot(index="source_model", columns="target_model", values="accuracy")
        rows = sorted(m.index)
        cols = [c for c in rows if c in m.columns] + sorted(c for c in m.columns if c not in rows)  # diagonal first
        m = m.loc[rows, cols]
        m.attrs["tasks"] = common
        out[(preset, method)] = m
    return out


def matrix_title(preset: str, method: str, m: pd.DataFrame, *, short: bool = False) -> str:
    """What a transfer matrix shows, naming the tasks its cells average (`short`: only how many, for plots)."""
    tasks = m.attrs.get("tasks")
    if not tasks:
        over = "each pair averaged over its own tasks"
    elif len(tasks) == 1:
        over = f"on {tasks[0]}"
    else:
        over = f"averaged over {len(tasks)} tasks" + ("" if short else f" ({', '.join(tasks)})")
    return f"{method} (preset {preset}), test accuracy % {over}"


def transfer_leaderboard(records: Iterable[CellRecord]) -> pd.DataFrame:
    """The leaderboard of transferred prompts, keyed by (preset, "source -> target", task, method): every
    prompt optimized on the source model scored on the target, with the same statistics as `leaderboard`
    (interval, Δ and p vs zero-shot CoT and vs GReaTer on the target's test examples; other readings). The
    cost columns are the source's optimization (what the prompt cost to make); dev accuracy is left out (it
    was measured on the source model)."""
    records = list(records)
    made = {r.run_id: r for r in records if r.kind == "optimize"}
    moved = []
    for r in records:
        if r.kind != "eval" or r.source_run is None:
            continue
        src = made.get(r.source_run)
        moved.append(dataclasses.replace(
            r, kind="optimize", model=f"{r.source_model} -> {r.model}", cost=src.cost if src else {},
            dev_accuracy=None, zs_cot_accuracy=None,
        ))
    return leaderboard(moved)


def prompts_table(records: Iterable[CellRecord]) -> pd.DataFrame:
    """The final prompt of every optimize cell with its test accuracy."""
    rows = [{"method": r.method, "task": r.task, "model": r.model, "seed": r.seed, "preset": r.preset,
             "accuracy": r.accuracy, "prompt": r.prompt or ""} for r in records if r.kind == "optimize"]
    df = pd.DataFrame(rows, columns=["method", "task", "model", "seed", "preset", "accuracy", "prompt"])
    return df.sort_values(["preset", "model", "task", "method", "seed"]).reset_index(drop=True)
