"""Published numbers beside measured ones: `bench leaderboard --targets paper`.

A target set is data (`harness/reports/targets/<name>.json`: model, task, method, value, source per row, the task
groups the values average over, the preset and answer reading they are matched on, and the tolerance). Each row
is compared with the leaderboard: the same model id (a hub id: the paper's models are
`meta-llama/Meta-Llama-3-8B-Instruct` and `google/gemma-2-9b-it`), preset and method, read with the same reading
(the `<reading>_accuracy` column); a group's measured value is the mean over its tasks and exists only when every
task of the group was run. The verdict per row: "reproduced" (within the tolerance, in points), "not reproduced",
or "not run".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.registry import Registry
from harness.core.types import BenchError

FOLDER = Path(__file__).parent / "targets"

COLUMNS = ["model", "task", "method", "paper", "measured", "difference", "verdict", "tasks_run", "source"]


def load_targets(name: str) -> dict[str, Any]:
    """The target set `name` (did-you-mean on a typo)."""
    sets: Registry[Path] = Registry("target set", fix="use paper")
    for p in sorted(FOLDER.glob("*.json")):
        sets.add(p.stem, p)
    path = sets.get(name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"cannot read target set {path}: {e}") from None


def compare(targets: dict[str, Any], board: pd.DataFrame, transfer_board: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per target: paper value, measured value (%), their difference (measured - paper, points) and the
    verdict. `board` is `leaderboard(records)`, `transfer_board` is `transfer_leaderboard(records)` (models
    "source -> target")."""
    boards = [b for b in (board, transfer_board) if b is not None and not b.empty]
    both = pd.concat(boards, ignore_index=True) if boards else pd.DataFrame(columns=["preset", "model", "task", "method"])
    col = f"{targets['reading']}_accuracy"
    here = both[(both["preset"] == targets["preset"]) & (both["task"] != "average")] if not both.empty else both
    tol = float(targets["tolerance_points"])
    rows = []
    for t in targets["targets"]:
        tasks = _tasks(t["task"], targets["groups"])
        got = here[(here["model"] == t["model"]) & (here["method"] == t["method"]) & here["task"].isin(tasks)]
        values = {r["task"]: r.get(col, math.nan) for _, r in got.iterrows()} if not got.empty else {}
        values = {k: v for k, v in values.items() if not pd.isna(v)}
        measured = 100 * float(np.mean([values[k] for k in tasks])) if len(values) == len(tasks) else math.nan
        diff = measured - float(t["value"])
        verdict = "not run" if math.isnan(measured) else "reproduced" if abs(diff) <= tol + 1e-9 else "not reproduced"
        rows.append({"model": t["model"], "task": t["task"], "method": t["method"], "paper": float(t["value"]),
                     "measured": measured, "difference": diff, "verdict": verdict,
                     "tasks_run": f"{len(values)}/{len(tasks)}", "source": t["source"]})
    return pd.DataFrame(rows, columns=COLUMNS)


def _tasks(task: str, groups: dict[str, list[str]]) -> list[str]:
    """A target's task names as the harness spells them: a group's BBH tasks, or the task itself."""
    if task in groups:
        return [f"bbh:{t}" for t in groups[task]]
    return [task]


def to_markdown(df: pd.DataFrame, targets: dict[str, Any]) -> str:
    """The comparison as a Markdown section."""
    f = lambda x: "-" if pd.isna(x) else f"{x:.1f}"  # noqa: E731
    lines = [f"### paper targets (preset {targets['preset']}, {targets['reading']} reading; reproduced = within "
             f"{targets['tolerance_points']:g} points)\n",
             "| model | task | method | paper | measured | Δ | verdict | tasks run |", "|---|---|---|---:|---:|---:|---|---:|"]
    for _, r in df.iterrows():
        d = "-" if pd.isna(r["difference"]) else f"{r['difference']:+.1f}"
        lines.append(f"| {r['model']} | {r['task']} | {r['method']} | {f(r['paper'])} | {f(r['measured'])} | {d} | "
                     f"{r['verdict']} | {r['tasks_run']} |")
    sources = sorted(set(df["source"]))
    lines += ["", "Sources: " + "; ".join(sources) + ". " + targets["about"], ""]
    return "\n".join(lines) + "\n"
