"""Text measures shared by the methods, the context and the reports: words as the harness sees them, runs of
words (copy and leakage checks), and a prompt's length in tokens by one model-independent rule."""

from __future__ import annotations

import re


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
