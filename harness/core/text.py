"""Text measures shared by the methods, the context and the reports: words as the harness sees them, runs of
words (copy and leakage checks), a prompt's length in tokens by one model-independent rule, and the "did you
mean" hint of every unknown-name error."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


def words(text: str) -> list[str]:
    """Words as the check sees them: case-folded runs of letters and digits."""
    return re.findall(r"[^\W_]+", text.casefold())


def word_runs(text: str, n: int) -> list[tuple[str, ...]]:
    """Every run of `n` consecutive words of `text`."""
    w = words(text)
    return [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]


_TOKEN = re.compile(r"[^\W_]+|[^\w\s]")


def prompt_tokens(prompt: str | None) -> int:
    """The length of a prompt in tokens by one model-independent rule, so prompts of every method and model are
    measured alike (the leaderboard's `prompt tokens`, and `--length-penalty`): words (runs of letters and digits)
    and single punctuation marks. English BPE tokenizers give about as many (SmolLM2's: within ~20%)."""
    return len(_TOKEN.findall(prompt or ""))


def did_you_mean(word: str, known: Iterable[str], *, n: int = 1, cutoff: float = 0.6, what: str = "",
                 prefix: str = "; ", suffix: str = "") -> str:
    """`{prefix}did you mean {what}'a' or 'b'?{suffix}` for the (at most `n`) known names close to `word` by
    `difflib.get_close_matches` at `cutoff`; "" when none is."""
    close = difflib.get_close_matches(word, list(known), n=n, cutoff=cutoff)
    return f"{prefix}did you mean {what}{' or '.join(repr(c) for c in close)}?{suffix}" if close else ""
