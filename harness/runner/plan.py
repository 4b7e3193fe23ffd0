"""`bench run --dry-run`: what a grid would do, and what it would cost, before it runs (size a cluster first).

For every cell: finished (summary.json), partial (steps logged so far) or to do; an estimate of its
task-model tokens (the common budget when one is set, else the mean of finished cells of the same method and
preset in the results folder or the reference results, else the method's preset default below) plus its final
dev/test evaluations; its time at a rate of task-model tokens per second (`--rate`, else the rate measured
from the finished cells found, else `DEFAULT_RATE`); the total, and the wall time at the requested parallelism.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.spec import RunSpec
from harness.runner.records import RunFolder

# Task-model tokens of one cell's optimization when nothing better is known: the reference records' means
# (smollm2-135m, cpu preset: GReaTer 60.7k; the text baselines at the common 60k budget end at 64-74k).
DEFAULT_TOKENS = {"smoke": 2_000, "cpu": 65_000, "paper": 2_000_000}
DEFAULT_RATE = 120.0  # task-model tokens/s: smollm2-135m, HF float32, batch 8, one core (docs/benchmarks.md)
REFERENCE = Path(__file__).resolve().parents[2] / "results"


@dataclass(frozen=True)
class CellPlan:
    spec: RunSpec
    status: str  # "finished", "partial (N steps)" or "to do"
    tokens: float  # estimated task-model tokens still to spend (0 when finished)
    seconds: float


@dataclass(frozen=True)
class Plan:
    cells: tuple[CellPlan, ...]
    rate: float
    rate_source: str
    parallel: int

    @property
    def tokens(self) -> float:
        return sum(c.tokens for c in self.cells)

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.cells)

    @property
    def wall_seconds(self) -> float:
        """At `parallel` cells at once: the work divided among them, never below the longest cell."""
        left = [c.seconds for c in self.cells if c.seconds > 0]
        return max(sum(left) / self.parallel, max(left, default=0.0)) if left else 0.0


def _finished_costs(folders: Sequence[Path]) -> list[tuple[str, str, float, float]]:
    """(method, preset, task tokens, wall seconds) of finished optimize cells not replayed from a cache."""
    out = []
    for root in folders:
        if not root.is_dir():
            continue
        for p in root.iterdir():
            try:
                summary = json.loads((p / "summary.json").read_text())
            except (OSError, ValueError):
                continue
            cost = summary.get("cost") or {}
            if "method" not in summary or not cost:
                continue
            tokens = float(cost.get("task_tokens_in", 0)) + float(cost.get("task_tokens_out", 0))
            calls = float(cost.get("task_calls", 0)) + float(cost.get("optimizer_calls", 0))
            wall = float(cost.get("wall_seconds", 0))
            cached = float(cost.get("cached_calls", 0))
            if tokens and wall >= 1 and not (calls and cached / calls >= 0.5):
                out.append((summary["method"], str(summary.get("preset")), tokens, wall))
    return out


def make_plan(specs: Sequence[RunSpec], out: str | Path, *, parallel: int = 1, rate: float | None = None,
              eval_rows: dict[str, int] | None = None) -> Plan:
    """The plan of `specs` against the results folder `out` (the reference results also inform estimates).
    `eval_rows`: task -> dev + test rows each cell scores at the end (estimated at the spec's reasoning length)."""
    known = _finished_costs([Path(out), REFERENCE])
    if rate is None:
        rates = [t / w for _, _, t, w in known]
        rate, source = (statistics.median(rates), f"median of {len(rates)} finished cells") if rates else (DEFAULT_RATE, "default")
    else:
        source = "--rate"
    cells = []
    for spec in specs:
        folder = RunFolder(Path(out), spec)
        evals = (eval_rows or {}).get(spec.task, 0) * (spec.max_new_tokens + 200)  # reasoning + prompt per row
        if folder.finished:
            cells.append(CellPlan(spec, "finished", 0.0, 0.0))
            continue
        same = [t for m, p, t, _ in known if m == spec.method and p == spec.preset]
        if spec.budget is not None and spec.budget.task_tokens:
            tokens = float(spec.budget.task_tokens)
        elif same:
            tokens = statistics.mean(same)
        else:
            tokens = float(DEFAULT_TOKENS.get(spec.preset or "cpu", DEFAULT_TOKENS["cpu"]))
        if spec.method in ("zs-cot", "no-instruction"):
            tokens = 0.0
        steps = folder.path / "steps.jsonl"
        status = "to do"
        if steps.exists():
            done = sum(1 for line in steps.read_text().splitlines() if line.strip())
            status = f"partial ({done} steps)"
            try:
                last = json.loads(steps.read_text().splitlines()[-1])["cost"]
                tokens = max(0.0, tokens - float(last.get("task_tokens_in", 0)) - float(last.get("task_tokens_out", 0)))
            except (ValueError, KeyError, IndexError):
                pass
        total = tokens + evals
        cells.append(CellPlan(spec, status, total, total / rate))
    return Plan(cells=tuple(cells), rate=rate, rate_source=source, parallel=max(1, parallel))
