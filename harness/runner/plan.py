"""`bench run --dry-run`: what a grid would do, and what it would cost, before it runs (size a cluster first).

For every cell: finished (summary.json), partial (steps logged so far) or to do, and its estimated
task-model tokens and time, from measurements where there are some:
- optimization time: the median wall time of finished cells of the same method, preset and budget (in the
  results folder or the reference results: a grid's later seeds are priced by its first), the ones of the
  same model and task if there are some (tasks differ in reasoning length); without such
  cells, its tokens (the common budget, else the mean of finished cells of the same method and preset, else
  the preset default below) at a rate of task-model tokens per second (`--rate`, else the median rate of the
  finished cells found, else `DEFAULT_RATE`); a partial cell pays for the tokens it has left;
- final dev/test evaluations: the median seconds per evaluated row of finished cells (their `evaluation`
  record) times the cell's rows; without any, the rows' generated tokens (the reasoning length) at the rate;
the total, and the wall time at the requested parallelism.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.records import REFERENCE_RESULTS, StepRecord, SummaryRecord, load_run, read_lines, run_folders
from harness.core.spec import RunSpec
from harness.core.types import BenchError
from harness.runner.records import RunFolder

# Task-model tokens of one cell's optimization when nothing better is known: the reference records' means
# (smollm2-135m, cpu preset: GReaTer 60.7k; the text baselines at the common 60k budget end at 64-74k).
DEFAULT_TOKENS = {"smoke": 2_000, "cpu": 65_000, "paper": 2_000_000}
DEFAULT_RATE = 120.0  # task-model tokens/s: smollm2-135m, HF float32, batch 8, one core (docs/benchmarks.md)
REFERENCE = REFERENCE_RESULTS


def check_rate(rate: float | None) -> float | None:
    """`--rate`: a finite number of task-model tokens per second above 0 (0 would divide by zero, a negative or
    NaN rate would print negative or zero estimates)."""
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise BenchError(f"--rate must be a number of task-model tokens per second above 0 (got {rate:g}): e.g. "
                         f"--rate {DEFAULT_RATE:g}, or leave it out to use the rate of finished cells")
    return rate


@dataclass(frozen=True)
class CellPlan:
    spec: RunSpec
    status: str  # "finished", "partial (N steps)" or "to do"
    tokens: float  # estimated task-model tokens still to spend (0 when finished)
    seconds: float
    measured: bool = False  # its optimization time is the median of finished cells like it


@dataclass(frozen=True)
class Plan:
    cells: tuple[CellPlan, ...]
    rate: float
    rate_source: str
    parallel: int
    eval_source: str = "generated tokens at the rate"  # how the final evaluations were priced
    # models with cells to run and no finished cell of their own: priced at the other models' speed, which a
    # model of another size does not share (say so; --rate sets it)
    unmeasured_models: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class Finished:
    """What a finished optimize cell cost (not replayed from the response cache)."""

    method: str
    preset: str
    budget: int | None  # the common task-token budget, if any
    model: str
    task: str
    tokens: float  # task-model tokens of the optimization
    wall: float  # its seconds
    eval_seconds_per_row: float | None  # the final evaluations' seconds per row (records since 2026-12)


def _finished_costs(folders: Sequence[Path]) -> list[Finished]:
    out = []
    for root in folders:
        if not root.is_dir():
            continue
        for path in run_folders(root):
            try:
                run = load_run(path)
            except BenchError:  # a corrupt record prices nothing (`bench leaderboard` names it)
                continue
            summary, spec = run.summary, run.spec.spec
            if not isinstance(summary, SummaryRecord) or summary.method is None or not summary.cost:
                continue
            cost = summary.cost
            tokens = float(cost.get("task_tokens_in", 0)) + float(cost.get("task_tokens_out", 0))
            calls = float(cost.get("task_calls", 0)) + float(cost.get("optimizer_calls", 0))
            wall = float(cost.get("wall_seconds", 0))
            cached = float(cost.get("cached_calls", 0))
            if not tokens or wall < 1 or (calls and cached / calls >= 0.5):
                continue
            evaluation = summary.evaluation or {}
            per_row = evaluation["seconds"] / evaluation["rows"] if evaluation.get("rows") else None
            budget = (spec.get("budget") or {}).get("task_tokens")
            out.append(Finished(summary.method, str(summary.preset), budget, str(spec.get("model")),
                                str(spec.get("task")), tokens, wall, per_row))
    return out


def _logged(path: Path) -> tuple[int, Mapping[str, float] | None]:
    """The steps a partial cell logged, as a resumed run reads them (a torn last line is not a step), and the
    cost meter after the last one."""
    try:
        steps = read_lines(StepRecord, path, torn_tail_ok=True)
    except BenchError:
        return sum(1 for line in path.read_text().splitlines() if line.strip()), None
    return len(steps), steps[-1].cost if steps else None


def make_plan(specs: Sequence[RunSpec], out: str | Path, *, parallel: int = 1, rate: float | None = None,
              eval_rows: dict[str, int] | None = None, reference: Path | None = REFERENCE) -> Plan:
    """The plan of `specs` against the results folder `out` (and the finished cells of `reference`).
    `eval_rows`: task -> dev + test rows each cell scores at the end."""
    same_folder = reference is not None and Path(reference).resolve() == Path(out).resolve()
    check_rate(rate)
    known = _finished_costs([Path(out)] + ([Path(reference)] if reference and not same_folder else []))  # each cell once
    if rate is None:
        rates = [f.tokens / f.wall for f in known]
        rate, source = (statistics.median(rates), f"median of {len(rates)} finished cells") if rates else (DEFAULT_RATE, "default")
    else:
        source = "--rate"
    per_row = [f.eval_seconds_per_row for f in known if f.eval_seconds_per_row is not None]
    row_seconds = statistics.median(per_row) if per_row else None
    cells, unmeasured = [], []
    for spec in specs:
        folder = RunFolder(Path(out), spec)
        if folder.finished:
            cells.append(CellPlan(spec, "finished", 0.0, 0.0))
            continue
        # a model's speed is its own: price from its finished cells where it has some, else from all (and say so)
        mine = [f for f in known if f.model == spec.model]
        if not mine and known and spec.model not in unmeasured:
            unmeasured.append(spec.model)
        model_rate = rate if source == "--rate" or not mine else statistics.median(f.tokens / f.wall for f in mine)
        model_rows = [f.eval_seconds_per_row for f in mine if f.eval_seconds_per_row is not None]
        model_row_seconds = statistics.median(model_rows) if model_rows else (None if mine else row_seconds)
        rows = (eval_rows or {}).get(spec.task, 0)
        eval_tokens = rows * (spec.max_new_tokens + 200)  # reasoning + prompt per row
        # unmeasured: the generated tokens at the rate (the rows' prompt tokens are read in batches, far faster)
        eval_seconds = rows * (model_row_seconds if model_row_seconds is not None else spec.max_new_tokens / model_rate)
        budget = spec.budget.task_tokens if spec.budget is not None else None
        same = [f for f in mine if f.method == spec.method and f.preset == spec.preset]
        alike = [f for f in same if f.budget == budget]  # the same model, method, preset and budget: measured
        closer = [f for f in alike if f.task == spec.task]  # the closest: also the same task
        alike = closer or alike
        if budget:
            tokens = float(budget)
        elif same:
            tokens = statistics.mean(f.tokens for f in same)
        else:
            tokens = float(DEFAULT_TOKENS.get(spec.preset or "cpu", DEFAULT_TOKENS["cpu"]))
        if spec.method in ("zs-cot", "no-instruction"):
            tokens, alike = 0.0, []
        opt_seconds = statistics.median(f.wall for f in alike) if alike else tokens / model_rate
        steps = folder.path / "steps.jsonl"
        status = "to do"
        if steps.exists():
            logged, last = _logged(steps)
            status = f"partial ({logged} steps)"
            if last is not None:
                left = max(0.0, tokens - float(last.get("task_tokens_in", 0)) - float(last.get("task_tokens_out", 0)))
                opt_seconds *= left / tokens if tokens else 0.0
                tokens = left
        cells.append(CellPlan(spec, status, tokens + eval_tokens, opt_seconds + eval_seconds, measured=bool(alike)))
    return Plan(cells=tuple(cells), rate=rate, rate_source=source, parallel=max(1, parallel),
                eval_source=f"median of {len(per_row)} cells" if per_row else "generated tokens at the rate",
                unmeasured_models=tuple(unmeasured))
