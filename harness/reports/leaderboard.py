"""The leaderboard and the transfer tables: pure functions of `CellRecord`s (`harness.reports.loading` reads
them), returning pandas DataFrames, so a report is regenerated, never edited.

Leaderboard rows are keyed by (preset, model, task, method); `task == "average"` rows average over the tasks
every method of that (preset, model) has. Columns:
  seeds, accuracy, ci_low, ci_high (95%: t interval over seeds when there are several, else the run's own
  bootstrap interval), dev_accuracy, zs_cot_in_cell (each cell's zero-shot-CoT test accuracy), n_test,
  delta_vs_zs_cot / delta_lo / delta_hi (paired bootstrap over the same test examples), p_vs_zs_cot and
  p_vs_greater (exact sign test of per-example correctness averaged over common seeds; with one seed this is
  the exact McNemar test), primary (the reading `accuracy` uses), greedy_accuracy, options_accuracy and
  fallback_accuracy (the same test runs read each way; NaN where a reading does not apply, and in an
  average row when one of its tasks lacks it), tokens, calls,
  task_tokens, optimizer_tokens, forward_passes, backward_passes, unparseable, wall_seconds (means per cell);
  dev_minus_test / dmt_low / dmt_high (dev accuracy minus test accuracy, `dev_minus_test`), prompt_tokens (the
  found prompt's length, `harness.core.text.prompt_tokens`) and reasoning_tokens (mean reasoning
  tokens it induced at test), means over seeds; leak_words / leak_split (the longest word run the prompt shares
  with a train, dev or test input or gold, the largest over seeds, and its split; NaN when unknown).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.core.text import prompt_tokens
from harness.core.types import READINGS, BenchError
from harness.evaluation.stats import mean_interval, paired_bootstrap, sign_test, stratified_bootstrap_ci
from harness.reports.loading import CellRecord

REFERENCE = "zs-cot"
BASELINE = "greater"
IN_CELL = "zs-cot (in-cell)"  # the reference row built from each cell's zero_shot_cot_test_accuracy
MAJORITY = "majority class"  # always giving the test split's most frequent answer (closed answer sets)


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
    row.update(dev_minus_test(runs))
    row["prompt_tokens"] = float(np.mean([prompt_tokens(r.prompt) for r in runs]))
    got = [r.reasoning_tokens for r in runs if r.reasoning_tokens is not None]
    row["reasoning_tokens"] = float(np.mean(got)) if got else math.nan
    row.update(_leak(runs))
    for other, col in ((reference, "zs_cot"), (baseline, "greater")):
        if other == method or (task, other) not in here:
            cmp = _compare(np.zeros(0), np.zeros(0))
        else:
            cmp = _compare(*paired_diffs(by, here[(task, other)]))
        row[f"p_vs_{col}"] = cmp["p"]
        if col == "zs_cot":
            row.update(delta_vs_zs_cot=cmp["delta"], delta_lo=cmp["lo"], delta_hi=cmp["hi"])
    return row


def dev_minus_test(runs: Sequence[CellRecord]) -> dict[str, float]:
    """Dev accuracy minus test accuracy of the found prompt, mean over seeds, with a 95% interval (NaN without a
    dev accuracy). Dev is where most methods select their prompt, so a gap above the interval is selection
    overfitting: the prompt looks better on the rows it was chosen on than on held-out rows. The interval is the
    normal interval of a difference of two independent proportions (dev n, test n) averaged over seeds; with
    several seeds, the wider of that and the t interval over the per-seed gaps (as for accuracy)."""
    pairs = [(r.dev_accuracy, r.accuracy, r.dev_n, r.n) for r in runs if r.dev_accuracy is not None]
    if not pairs:
        return {"dev_minus_test": math.nan, "dmt_low": math.nan, "dmt_high": math.nan}
    gaps = [d - t for d, t, _, _ in pairs]
    gap = float(np.mean(gaps))
    if all(dn for _, _, dn, _ in pairs):
        var = sum(d * (1 - d) / dn + t * (1 - t) / tn for d, t, dn, tn in pairs) / len(pairs) ** 2
        half = 1.96 * math.sqrt(var)
        lo, hi = gap - half, gap + half
    else:
        lo = hi = math.nan
    if len(gaps) > 1:
        _, tlo, thi = mean_interval(gaps)
        lo, hi = (tlo, thi) if math.isnan(lo) else (min(lo, tlo), max(hi, thi))
    return {"dev_minus_test": gap, "dmt_low": lo, "dmt_high": hi}


def _leak(runs: Sequence[CellRecord]) -> dict[str, Any]:
    """The longest shared word run over a cell's seeds and its split (NaN / None when any seed's is unknown)."""
    if any(r.leakage is None for r in runs):
        return {"leak_words": math.nan, "leak_split": None}
    worst = max(runs, key=lambda r: int(r.leakage.get("words") or 0)).leakage
    return {"leak_words": float(worst.get("words") or 0), "leak_split": worst.get("split")}


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
    for col in ("dev_accuracy", "zs_cot_in_cell", "n_test", *COST_KEYS, "dev_minus_test", "prompt_tokens", "reasoning_tokens"):
        row[col] = float(np.nanmean([r[col] for r in per_task])) if any(not _nan(r[col]) for r in per_task) else math.nan
    for col in (f"{r}_accuracy" for r in READINGS):
        # a reading some task lacks (options on a numeric task) has no average: a mean over the other tasks
        # would sit in an "average over N tasks" table as if it were one
        row[col] = float(np.mean([r[col] for r in per_task])) if all(not _nan(r[col]) for r in per_task) else math.nan
    # the average gap's interval: the per-task intervals' half-widths combined as independent
    halves = [(r["dmt_high"] - r["dmt_low"]) / 2 for r in per_task if not _nan(r["dmt_low"])]
    half = math.sqrt(sum(h * h for h in halves)) / len(per_task) if len(halves) == len(per_task) else math.nan
    row["dmt_low"], row["dmt_high"] = row["dev_minus_test"] - half, row["dev_minus_test"] + half
    leaks = [r for r in per_task if not _nan(r["leak_words"])]
    worst = max(leaks, key=lambda r: r["leak_words"]) if len(leaks) == len(per_task) else None
    row["leak_words"], row["leak_split"] = (worst["leak_words"], worst["leak_split"]) if worst else (math.nan, None)
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


# ------------------------------------------------------------------------------------------ transfer


def transfer_table(records: Iterable[CellRecord]) -> pd.DataFrame:
    """Test accuracy of each method's prompts optimized on one model and scored on another, per task
    (mean over seeds). The source model's own optimize cells fill the diagonal unless a transfer run did; once
    some of a source's prompts were transferred, the diagonal averages those seeds only, so both sides of a
    row compare the same prompts (a transfer of seed 0 is not set against the mean of seeds 0-2)."""
    records = list(records)
    transferred: dict[tuple[str, str, str, str], set[int]] = defaultdict(set)
    for r in records:
        if r.kind == "eval" and r.model != r.source_model:
            transferred[(r.preset, r.method, r.task, r.source_model)].add(r.seed)
    acc: dict[tuple[str, str, str, str, str], dict[int, float]] = defaultdict(dict)
    for r in records:
        key = (r.preset, r.method, r.task, r.source_model, r.model)
        paired = transferred.get(key[:4])
        if r.kind != "eval" and paired and r.seed not in paired:
            continue  # an optimize cell whose prompt no transfer scored
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
