"""Progress a person can follow, on a terminal and in a log file alike.

On a terminal: a rich bar per phase (examples done / total, tokens/s, time left). Otherwise (output to a file
or a pipe, as in CI or `nohup`): plain lines, one when a phase starts and ends and one at most every
`interval` seconds in between (`BENCH_PROGRESS_SECONDS`, default 15), so slow can be told from stuck.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Phase:
    """One phase's counters (a task's reasoning, its answers, a dev evaluation, ...)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.tokens = label, total, 0, 0
        self.t0 = time.perf_counter()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = f", {self.tokens / elapsed:.0f} tok/s" if self.tokens and elapsed > 0 else ""
        if 0 < self.done < self.total:
            eta = f", ETA {_clock(elapsed / self.done * (self.total - self.done))}"
        elif self.done >= self.total:
            eta = f", took {_clock(elapsed)}"
        else:
            eta = ""
        return f"{self.label}: {self.done}/{self.total} examples{rate}{eta}"


class Display:
    """`with Display(console) as d:` then `d.tracker(label)` as an evaluation's progress callback and
    `d.note(text)` for a method's own messages."""

    def __init__(self, console: Console, *, interval: float | None = None, live: bool | None = None) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.interval = interval if interval is not None else float(os.environ.get("BENCH_PROGRESS_SECONDS", "15"))
        self._bar: Any = None
        self._jobs: dict[str, Any] = {}
        self._phases: dict[str, Phase] = {}
        self._last = 0.0

    def __enter__(self) -> Display:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"),
                                 TimeRemainingColumn(), console=self.console, transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def note(self, text: str) -> None:
        (self._bar.console if self._bar is not None else self.console).print(text, highlight=False, markup=False)

    def tracker(self, label: str) -> Any:
        """A progress callback `(phase, done, total, tokens=0)` for `harness.evaluation.evaluate.evaluate`."""

        def tick(phase: str, done: int, total: int, tokens: int = 0) -> None:
            self.update(f"{label} {phase}", done, total, tokens)

        return tick

    def update(self, name: str, done: int, total: int, tokens: int = 0) -> None:
        ph = self._phases.get(name)
        if ph is None or done < ph.done or total != ph.total:  # a new phase (or the same name again)
            ph = self._phases[name] = Phase(name, total)
        ph.done, ph.tokens = done, tokens
        if self._bar is not None:
            job = self._jobs.get(name)
            if job is None:
                job = self._jobs[name] = self._bar.add_task(name, total=total, rate="")
            elapsed = time.perf_counter() - ph.t0
            rate = f"{tokens / elapsed:.0f} tok/s" if tokens and elapsed > 0 else ""
            self._bar.update(job, completed=done, total=total, rate=rate)
            if done >= total:
                self._bar.remove_task(job)
                del self._jobs[name]
            return
        now = time.perf_counter()
        if done == 0 or done >= total or now - self._last >= self.interval:
            self._last = now
            self.console.print(ph.line(), highlight=False, markup=False)
