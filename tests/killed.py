"""A killed run for resume tests: a generator wrapper that raises `Crash` part way through."""

from __future__ import annotations


class Crash(RuntimeError):
    pass


class CrashingAfter:
    """Wraps a generator; raises `Crash` instead of answering past its first `n` prompts (with `per_call`: past
    its first `n` generate calls)."""

    def __init__(self, inner, n, *, per_call=False):
        self.inner, self.n, self.per_call = inner, n, per_call

    @property
    def identity(self):
        return self.inner.identity

    def render(self, prompt):
        return self.inner.render(prompt)

    def generate(self, prompts, params):
        need = 1 if self.per_call else len(prompts)
        if need > self.n:
            raise Crash("killed")
        self.n -= need
        return self.inner.generate(prompts, params)

    def loglikelihood(self, requests):
        return self.inner.loglikelihood(requests)
