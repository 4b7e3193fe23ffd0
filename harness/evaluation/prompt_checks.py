"""What the leaderboard measures on a found prompt besides its accuracy: its length in tokens (`prompt_tokens`)
and its leakage of task data: the longest run of words it shares with any input or gold answer of its task's
train, dev or test rows (case and punctuation ignored).

One check for every method, applied to the prompt a run found (`harness.runner.run.run_optimize` records it in
summary.json; the leaderboard computes it for older records from the data). A prompt that repeats 8 or more
words of a row carries the row's text, not an instruction: the leaderboard flags it and names the split. The
same word runs are what PE2's and EvoPrompt's `CopyGuard` (`baselines.parsing`) rejects while they search.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.core.text import words
from harness.core.types import Example, Splits

FLAG_WORDS = 8  # a shared run this long is flagged in the leaderboard
SPLITS = ("train", "dev", "test")


def longest_shared_run(prompt: str, sources: Iterable[str]) -> tuple[int, str, int]:
    """(length, the shared words, index of the first source holding them) of the longest word run `prompt`
    shares with any of `sources`; (0, "", -1) when no word is shared. Binary search on the length: a source that
    shares a run of n words shares every shorter one."""
    texts = [words(s) for s in sources]
    pw = words(prompt)
    best: tuple[int, str, int] = (0, "", -1)
    lo, hi = 1, len(pw)
    while lo <= hi:
        n = (lo + hi) // 2
        runs = {tuple(pw[i : i + n]) for i in range(len(pw) - n + 1)}
        hit = next(((j, r) for j, t in enumerate(texts) for r in (tuple(t[i : i + n]) for i in range(len(t) - n + 1))
                    if r in runs), None)
        if hit is None:
            hi = n - 1
        else:
            best, lo = (n, " ".join(hit[1]), hit[0]), n + 1
    return best


def leakage(prompt: str | None, splits: Splits) -> dict[str, Any]:
    """The longest word run `prompt` shares with an input or gold answer of `splits`: {"words", "split", "field",
    "example", "text"} (words 0 and the rest None when nothing is shared or there is no prompt)."""
    out: dict[str, Any] = {"words": 0, "split": None, "field": None, "example": None, "text": None}
    if not prompt:
        return out
    for split in SPLITS:
        rows: tuple[Example, ...] = splits.get(split)
        for field in ("input", "target"):
            n, text, j = longest_shared_run(prompt, (getattr(r, field) for r in rows))
            if n > out["words"]:
                out = {"words": n, "split": split, "field": field, "example": rows[j].id, "text": text}
    return out


def flagged(record: Mapping[str, Any] | None) -> bool:
    """Whether a `leakage` record reaches the flag (`FLAG_WORDS` or more shared words)."""
    return bool(record) and int(record.get("words") or 0) >= FLAG_WORDS
