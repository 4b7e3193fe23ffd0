"""Progress of a grid: the status a display shows on every event, the ETA, and the bookkeeping behind both.

`run_grid` (`harness.runner.grid`) keeps a `Board`: every cell's record, the counts of done, failed, running and
waiting cells, and the wall times per method. It turns the messages of `harness.runner.grid.run_cells` (sent in
this process or forwarded from a child's pipe) into one `GridStatus` per event, whose ETA (`estimate_eta`)
gives each waiting cell the mean wall time of the finished cells of its method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.context import Progress, ProgressEvent
from harness.runner.cells import Cell
from harness.runner.child import Send

if TYPE_CHECKING:
    from harness.core.spec import RunSpec


@dataclass(frozen=True, kw_only=True)
class GridStatus:
    """What a progress display shows; sent on every event."""

    event: str  # "skip" (already finished), "start", "finish", "fail" or "end"
    cell: Cell | None
    index: int  # 0-based index of `cell` in the grid
    total: int
    done: int  # cells finished (including skipped ones)
    failed: int
    running: int  # cells being computed now (more than 1 with a parallel executor)
    left: int  # cells not started yet
    elapsed: float  # seconds since the grid started
    eta_seconds: float | None  # None until a cell has been computed in this process
    record: Mapping[str, Any] | None = None
    error: str | None = None

    def line(self) -> str:
        eta = "?" if self.eta_seconds is None else format_seconds(self.eta_seconds)
        return f"{self.done}/{self.total} done, {self.running} running, {self.left} left, {self.failed} failed; ETA {eta}"


def format_seconds(s: float) -> str:
    s = round(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def estimate_eta(
    durations: Mapping[str, Sequence[float]], remaining: Iterable[str], running: tuple[str, float] | None = None,
    *, also_running: Sequence[tuple[str, float]] = (), parallel: int = 1,
) -> float | None:
    """Seconds left: each remaining cell takes the mean wall time of finished cells of its method (or of
    all finished cells for a method not seen yet); a running cell its estimate minus its elapsed time. With
    `parallel` cells at once the work is divided among them (never below the longest running cell's rest)."""
    every = [d for ds in durations.values() for d in ds]
    if not every:
        return None
    overall = sum(every) / len(every)

    def guess(method: str) -> float:
        ds = durations.get(method) or ()
        return sum(ds) / len(ds) if ds else overall

    eta = sum(guess(m) for m in remaining)
    runs = ([running] if running is not None else []) + list(also_running)
    rests = [max(0.0, guess(m) - elapsed) for m, elapsed in runs]
    if parallel <= 1:
        return eta + sum(rests)
    return max((eta + sum(rests)) / parallel, max(rests, default=0.0))


class Board:
    """The grid's bookkeeping: every cell's record, the counts, wall times per method, and a `GridStatus` to
    `notify` on every event. `listener(indices)` turns `run_cells` messages into those events. `parallel`: how
    many cells an executor runs at once (for the ETA)."""

    def __init__(self, specs: Sequence[RunSpec], notify: Callable[[GridStatus], None],
                 progress: Progress | None, parallel: int = 1) -> None:
        self.cells, self.specs, self.notify, self.progress = [Cell.of(s) for s in specs], specs, notify, progress
        self.parallel = parallel
        self.records: list[dict[str, Any]] = [{} for _ in specs]
        self.waiting = list(range(len(specs)))  # neither started nor skipped yet (what the ETA adds up)
        self.running: dict[int, float] = {}  # cell index -> start time
        self.durations: dict[str, list[float]] = {}
        self.done = self.failed = 0
        self.t0 = time.perf_counter()

    def skip(self, i: int, record: dict[str, Any]) -> None:
        self.waiting.remove(i)
        self.done += 1
        self.records[i] = record
        self._notify("skip", i, record=record)

    def listener(self, indices: Sequence[int]) -> Send:
        """A `run_cells` message handler for specs that are the cells `indices` of the grid."""

        def on_message(message: list[Any]) -> None:
            event, k, *rest = message
            i = indices[k]
            if event == "say":  # a line of the cell's progress (`PhaseLines` made its counts into lines)
                if self.progress:
                    self.progress(ProgressEvent(text=rest[0], run=self.specs[i].run_id))
            elif event == "start":
                if i in self.running:  # started again: its worker died and the cell resumes elsewhere
                    return
                self.waiting.remove(i)
                self.running[i] = time.perf_counter()
                self._notify("start", i)
            elif event == "finish":
                started = self.running.pop(i, None)
                self.durations.setdefault(self.cells[i].method, []).append(time.perf_counter() - started if started else 0.0)
                self.done += 1
                self.records[i] = rest[0]
                self._notify("finish", i, record=rest[0])
            else:  # "fail"
                if i in self.waiting:  # never started: its model's child failed before
                    self.waiting.remove(i)
                self.running.pop(i, None)
                self.failed += 1
                self.records[i] = {"run_id": self.specs[i].run_id, "error": rest[0]}
                self._notify("fail", i, error=rest[0])

        return on_message

    def end(self) -> None:
        self._notify("end", None)

    def _notify(self, event: str, i: int | None, record: Any = None, error: str | None = None) -> None:
        now = time.perf_counter()
        runs = [(self.cells[j].method, now - t) for j, t in self.running.items()]
        eta = 0.0 if i is None else estimate_eta(
            self.durations, (self.cells[j].method for j in self.waiting), also_running=runs, parallel=self.parallel
        )
        self.notify(GridStatus(
            event=event, cell=None if i is None else self.cells[i], index=len(self.cells) - 1 if i is None else i,
            total=len(self.cells), done=self.done, failed=self.failed, running=len(self.running),
            left=len(self.waiting), elapsed=now - self.t0, eta_seconds=eta, record=record, error=error,
        ))


# ------------------------------------------------------------------------------------------ evaluation phases


class Phase:
    """One evaluation phase's counters (a task's reasoning, its answers, ...) and the line that reports them."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.tokens = label, total, 0, 0
        self.t0 = time.perf_counter()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = f", {self.tokens / elapsed:.0f} tok/s" if self.tokens and elapsed > 0 else ""
        if 0 < self.done < self.total:
            eta = f", ETA {format_seconds(elapsed / self.done * (self.total - self.done))}"
        elif self.done >= self.total:
            eta = f", took {format_seconds(elapsed)}"
        else:
            eta = ""
        return f"{self.label}: {self.done}/{self.total} examples{rate}{eta}"




class PhaseLines:
    """A `Progress` that hands lines of text on to `say` and turns counts into report lines: one when a phase
    starts and ends and at most one every `interval` seconds in between (phases named after `label`)."""

    def __init__(self, say: Progress, label: str = "", interval: float = 15.0) -> None:
        self.say, self.label, self.interval = say, label, interval
        self._phases: dict[str, Phase] = {}
        self._last = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if not event.counts:
            self.say(event)
            return
        name = f"{self.label} {event.phase}".strip()
        done, total = event.done, event.total
        ph = self._phases.get(name)
        if ph is None or done < ph.done or total != ph.total:
            ph = self._phases[name] = Phase(name, total)
        ph.done, ph.tokens = done, event.tokens
        now = time.perf_counter()
        if done == 0 or done >= total or now - self._last >= self.interval:
            self._last = now
            self.say(ProgressEvent(text=ph.line(), run=event.run))
