"""Progress a person can follow, on a terminal and in a log file alike.

On a terminal: a rich bar per phase (examples done / total, tokens/s, time left). Otherwise (output to a file
or a pipe, as in CI or `nohup`): plain lines, one when a phase starts and ends and one at most every
`interval` seconds in between (`BENCH_PROGRESS_SECONDS`, default 15), so slow can be told from stuck.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from harness.core.context import Progress, ProgressEvent
from harness.core.env import env_number
from harness.runner.progress import Phase, PhaseLines

PROGRESS_ENV = "BENCH_PROGRESS_SECONDS"


def progress_seconds(environ: Mapping[str, str] | None = None) -> float:
    """At most one progress line every this many seconds in a log (`BENCH_PROGRESS_SECONDS`, default 15; 0: every
    update). Commands read it before anything loads, so a bad value fails at once."""
    return env_number(PROGRESS_ENV, 15.0, environ, what="a number of seconds (0 or more)", example="15")


class Display:
    """`with Display(console) as d:` then `d.tracker(label)` as the progress callback of an evaluation or a run
    (its counts as bars or lines, its lines of text as notes), and `d.note(text)` for a line of one's own."""

    def __init__(self, console: Console, *, interval: float | None = None, live: bool | None = None) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.interval = interval if interval is not None else progress_seconds()
        self._bar: Any = None
        self._jobs: dict[str, Any] = {}
        self._phases: dict[str, Phase] = {}

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

    def tracker(self, label: str) -> Progress:
        """A `Progress` for `evaluate`, `run_eval` or `run_cell`: counts of phases named after `label`, lines noted."""
        if self._bar is None:
            return PhaseLines(lambda e: self.note(e.text), label, self.interval)

        def tick(e: ProgressEvent) -> None:
            if e.counts:
                self._update(f"{label} {e.phase}", e.done, e.total, e.tokens)
            else:
                self.note(e.text)

        return tick

    def _update(self, name: str, done: int, total: int, tokens: int = 0) -> None:
        ph = self._phases.get(name)
        if ph is None or done < ph.done or total != ph.total:  # a new phase (or the same name again)
            ph = self._phases[name] = Phase(name, total)
        ph.done, ph.tokens = done, tokens
        job = self._jobs.get(name)
        if job is None:
            job = self._jobs[name] = self._bar.add_task(name, total=total, rate="")
        elapsed = time.perf_counter() - ph.t0
        rate = f"{tokens / elapsed:.0f} tok/s" if tokens and elapsed > 0 else ""
        self._bar.update(job, completed=done, total=total, rate=rate)
        if done >= total:
            self._bar.remove_task(job)
            del self._jobs[name]
