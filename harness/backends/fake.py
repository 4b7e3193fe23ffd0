"""A scripted `Generator` for tests: no model, deterministic, records every call.

"Tokens" are whitespace-separated words: `max_tokens` counts them, `token_ids` are their crc32 modulo 50000
and `prompt_tokens` is the number of words of the rendered prompt.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence

from harness.core.types import ChatPrompt, Generation, GenParams, Prompt, Sample

ReplyFn = Callable[[str, GenParams, int], str]
LoglikFn = Callable[[str, str], float]

VOCAB = 50_000
_WORD = re.compile(r"\S+")


def token_ids(text: str) -> tuple[int, ...]:
    """Deterministic ids of the whitespace tokens of `text`."""
    return tuple(zlib.crc32(w.encode("utf-8")) % VOCAB for w in text.split())


def apply_limits(text: str, params: GenParams) -> Sample:
    """Cut `text` at the first stop string (finish "stop"), then at `max_tokens` words (finish "length")."""
    cuts = [i for i in (text.find(s) for s in params.stop if s) if i >= 0]
    if cuts:
        text = text[: min(cuts)]
    words = list(_WORD.finditer(text))
    if len(words) > params.max_tokens:
        text = text[: words[params.max_tokens - 1].end()]
        return Sample(text, token_ids(text), "length")
    return Sample(text, token_ids(text), "stop")


class ScriptExhausted(RuntimeError):
    """A list of scripted replies ran out."""


class ScriptedGenerator:
    """`reply` is `(rendered_prompt, params, sample_index) -> str` or a list of replies consumed in order
    (one per sample; running out raises `ScriptExhausted`). `loglik(rendered_prompt, continuation)` scores
    continuations; without it `loglikelihood` raises NotImplementedError, like a backend that cannot score.

    `calls` holds `(rendered prompts, params)` of every `generate` call and `loglik_calls` the
    `(rendered prompt, continuation)` lists of every `loglikelihood` call, so tests can assert batching.
    """

    def __init__(
        self, reply: ReplyFn | Sequence[str], loglik: LoglikFn | None = None, identity: str = "fake"
    ) -> None:
        if isinstance(reply, str):
            raise TypeError("reply must be a callable or a list of strings, not a single string")
        self._reply_fn: ReplyFn | None = reply if callable(reply) else None
        self._replies: list[str] = [] if callable(reply) else list(reply)
        self._used = 0
        self._loglik = loglik
        self._identity = identity
        self.calls: list[tuple[list[str], GenParams]] = []
        self.loglik_calls: list[list[tuple[str, str]]] = []

    @property
    def identity(self) -> str:
        return self._identity

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, ChatPrompt):
            return f"USER: {prompt.user}\nASSISTANT: {prompt.assistant_prefix}"
        if isinstance(prompt, str):
            return prompt
        raise TypeError(f"a prompt is a ChatPrompt or a str, not {type(prompt).__name__}")

    @property
    def remaining(self) -> int:
        """How many scripted replies are left (0 for a callable script)."""
        return len(self._replies) - self._used

    def _next(self, rendered: str, params: GenParams, index: int) -> str:
        if self._reply_fn is not None:
            return self._reply_fn(rendered, params, index)
        if self._used >= len(self._replies):
            raise ScriptExhausted(
                f"ScriptedGenerator ran out of replies: all {len(self._replies)} were used; "
                f"prompt {rendered[:60]!r} (sample {index}) has none left"
            )
        self._used += 1
        return self._replies[self._used - 1]

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        rendered = [self.render(p) for p in prompts]
        self.calls.append((rendered, params))
        out = []
        for r in rendered:
            samples = tuple(apply_limits(self._next(r, params, i), params) for i in range(params.n))
            out.append(Generation(prompt=r, prompt_tokens=len(r.split()), samples=samples))
        return out

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]]) -> list[float]:
        if self._loglik is None:
            raise NotImplementedError("this ScriptedGenerator has no `loglik` function: it cannot score")
        pairs = [(self.render(p), c) for p, c in requests]
        self.loglik_calls.append(pairs)
        return [float(self._loglik(r, c)) for r, c in pairs]
