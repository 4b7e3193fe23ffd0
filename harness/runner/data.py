"""The rows a run reads, loaded and checked before any model loads, and their fingerprints for the spec.

`RunData` loads each (task, split seed) once per command from the data folder (or the hub), checks that the
splits a run needs are not empty, and gives the `data_fingerprint` that goes into every `RunSpec` (each set of
rows hashed once per `RunData`, so a command makes one and passes it down): a run id depends on the rows'
content, so an edited data file makes a new run instead of returning an old result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.core.spec import RunSpec, data_fingerprint
from harness.core.types import BenchError, Example, Splits, Task


class RunData:
    """Loads the splits of each task once (per split seed) from `data_dir` (None: BENCH_DATA_DIR, else the hub)."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir
        self._splits: dict[tuple[str, int | None], Splits] = {}
        self._prints: dict[tuple[str, str | None, int | None, int | None], str] = {}  # each set of rows hashed once

    def task(self, name: str) -> Task:
        from tasks import get_task

        return get_task(name)

    def splits(self, task: str, split_seed: int | None = None) -> Splits:
        key = (task, split_seed)
        if key not in self._splits:
            self._splits[key] = self.task(task).load(data_dir=self.data_dir, seed=split_seed)
        return self._splits[key]

    # ------------------------------------------------------------------ eval runs
    def eval_rows(self, task: str, split: str, limit: int | None = None, split_seed: int | None = None) -> list[Example]:
        rows = list(self.splits(task, split_seed).get(split))
        if limit is not None:
            rows = rows[:limit]
        if not rows:
            raise BenchError(f"split {split!r} of {task} is empty: choose another split or data file")
        return rows

    def eval_fingerprint(self, task: str, split: str, limit: int | None = None, split_seed: int | None = None) -> str:
        key = (task, split, limit, split_seed)
        if key not in self._prints:
            self._prints[key] = data_fingerprint(self.eval_rows(task, split, limit, split_seed), self.task(task).reading_key)
        return self._prints[key]

    # ------------------------------------------------------------------ optimize runs
    def optimize_splits(self, task: str, split_seed: int | None = None) -> Splits:
        splits = self.splits(task, split_seed)
        for name in ("train", "dev", "test"):
            if not splits.get(name):
                raise BenchError(f"split {name!r} of {task} is empty: optimization needs train, dev and test rows")
        return splits

    def optimize_fingerprint(self, task: str, limit: int | None = None, split_seed: int | None = None) -> str:
        key = (task, None, limit, split_seed)
        if key not in self._prints:
            s = self.optimize_splits(task, split_seed)
            self._prints[key] = data_fingerprint([*s.train, *s.dev, *_first(s.test, limit)], self.task(task).reading_key)
        return self._prints[key]

    # ------------------------------------------------------------------ a spec's rows
    def fingerprint_of(self, spec: RunSpec) -> str:
        """The fingerprint `spec`'s rows have now (the spec holds the one they had when it was made)."""
        if spec.kind == "eval":
            return self.eval_fingerprint(spec.task, spec.split, spec.limit, spec.split_seed)
        return self.optimize_fingerprint(spec.task, spec.limit, spec.split_seed)

    def check(self, spec: RunSpec) -> None:
        """Fail when the data on disk is not the data the spec was made from (an edited file, another folder)."""
        now = self.fingerprint_of(spec)
        if now != spec.data:
            raise BenchError(
                f"the rows of {spec.task} changed since this run was specified (fingerprint {spec.data}, now {now}): "
                "build the spec again from the current data (re-run the command)"
            )


def _first(rows: Sequence[Example], limit: int | None) -> list[Example]:
    return list(rows[:limit] if limit else rows)
