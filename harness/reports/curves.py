"""Curves over an optimization, from the step logs: per-step train/dev accuracy (`curves`) and the anytime view
(`anytime`: the best-so-far selection score against cumulative tokens, the same cost meter for every method)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from harness.core.records import StepRecord
from harness.reports.leaderboard import cost_summary
from harness.reports.loading import CellRecord

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
            train, dev = _number(s.train_accuracy), _number(s.dev_accuracy)
            if math.isnan(train) and math.isnan(dev):
                train, dev = _legacy_curve_point(s)
            if not (math.isnan(train) and math.isnan(dev)):
                rows.append({"run_id": r.run_id, "method": r.method, "task": r.task, "model": r.model, "seed": r.seed,
                             "preset": r.preset, "step": i, "train_accuracy": train, "dev_accuracy": dev})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _number(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def _legacy_curve_point(step: StepRecord) -> tuple[float, float]:
    """(train, dev) accuracy of a step logged before the shared keys existed: GReaTer's `train_error` and its
    `dev` selection list, APE's and OPRO's `scored` [prompt, score] pairs (the best of them)."""
    train = 1 - _number(step.get("train_error"))
    if math.isnan(train) and isinstance(step.get("scored"), list):
        scores = [_number(p[1]) for p in step.get("scored") if isinstance(p, (list, tuple)) and len(p) > 1]
        train = max((x for x in scores if not math.isnan(x)), default=math.nan)
    listed = step.get("dev") if isinstance(step.get("dev"), list) else []
    devs = [_number(d.get("accuracy")) for d in listed if isinstance(d, dict)]
    dev = max((x for x in devs if not math.isnan(x)), default=math.nan)
    return train, dev


ANYTIME_COLUMNS = ["run_id", "method", "task", "model", "seed", "preset", "step", "task_tokens", "optimizer_tokens",
                   "tokens", "score", "split", "final"]
DEV_SELECTING = ("textgrad", "pe2")  # methods whose per-step score is on dev (their selection split)


def anytime(records: Iterable[CellRecord]) -> pd.DataFrame:
    """Anytime curves: per optimize run, the best-so-far prompt's selection score after each logged step against
    the cumulative tokens spent so far (task model and optimizer model, in + out: the one cost meter every method
    reports at every step), then a `final` row: the found prompt's test accuracy at the run's total tokens.

    The score is a step's `selection_score` when the method logged one (the score it selects by, length penalty
    included), else the running maximum of the shared curve key on the method's selection split (`curves`): dev
    for TextGrad and PE2, train for the others (GReaTer keeps its best prompts by training score; its dev choice
    at the end is the `final` row's prompt). Runs whose steps hold neither show only their final point.
    """
    rows: list[dict[str, Any]] = []
    for r in records:
        if r.kind != "optimize":
            continue
        key = dict(run_id=r.run_id, method=r.method, task=r.task, model=r.model, seed=r.seed, preset=r.preset)
        split = "dev" if r.method in DEV_SELECTING else "train"
        best = -math.inf
        for i, s in enumerate(r.steps):
            score = _number(s.selection_score)
            if math.isnan(score):
                score = _number(s.get(f"{split}_accuracy"))
                if math.isnan(score) and split == "train":
                    score = _legacy_curve_point(s)[0]
                if not math.isnan(score):
                    score = best = max(best, score)
            if math.isnan(score):
                continue
            best = max(best, score)
            rows.append({**key, "step": i, **_tokens(s.cost or {}), "score": score, "split": split, "final": False})
        rows.append({**key, "step": len(r.steps), **_tokens(r.cost), "score": r.accuracy, "split": "test", "final": True})
    return pd.DataFrame(rows, columns=ANYTIME_COLUMNS)


def _tokens(cost: Mapping[str, Any]) -> dict[str, float]:
    c = cost_summary(cost)
    return {k: c[k] for k in ("task_tokens", "optimizer_tokens", "tokens")}
