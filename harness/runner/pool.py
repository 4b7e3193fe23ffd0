"""The model pool: each (model, backend, dtype) opened once and shared by everything using it; the only
place that holds loaded models and engines (backends open and close, they do not cache).

`bench run` (`harness.runner.grid`), `bench optimize` and `bench transfer` open their models through a `ModelPool`
instead of calling the backends themselves, so a model loads once however many cells or prompts use it,
GReaTer's gradient model shares the weights loaded for decoding, and `release(model)` frees a model's weights
before the next one loads. How a pool opens models is one `PoolSettings`, the same for this process, a child
process (`harness.runner.child`, which gets it as JSON from `child_settings()`) and a Ray worker.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.core.types import BenchError, Generator, GradientModel
from harness.runner.child import import_function, opener_for_child

Opener = Callable[[str, str, str], Generator]  # (model, backend, dtype) -> Generator

# An engine that cannot be freed (vLLM: it holds its memory until the process ends, and a second engine in the
# same process fails to start) is opened once per process and shared by every pool of it. This module is the
# only place that holds loaded models and engines; the backends open and close, they do not cache.
PROCESS_LIFETIME_BACKENDS = ("vllm",)
_ENGINES: dict[tuple[str, str, str, int, int | None], Generator] = {}


@dataclass(frozen=True, kw_only=True)
class PoolSettings:
    """How a `ModelPool` opens models: the one set of pool options of `bench run`, `bench optimize`, `bench eval`,
    their child processes and Ray workers.

    `opener` defaults to `open_generator` (HF weights, wrapped in the response cache when `cache`); tests pass
    scripted generators, as a function or as "module:function" (which a child process can import too).
    `device` is the torch device of every HF model the default opener loads (None: cuda, else mps, else cpu).
    """

    opener: Opener | str | None = None
    cache: bool = True
    threads: int | None = None  # hf: torch threads; vllm: cores bound (None: the backend's default)
    batch_size: int = 8
    device: str | None = None

    def for_child(self) -> dict[str, Any]:
        """These settings as JSON for a child process (an opener function cannot go there: a one-line error)."""
        return {**dataclasses.asdict(self), "opener": opener_for_child(self.opener)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PoolSettings:
        return cls(**d)


class ModelPool:
    """Opens each (model, backend, dtype) once per process and hands out the same generator afterwards, as its
    `PoolSettings` say (given whole, or as their keyword arguments). `release(model)` drops a model and frees its
    weights.
    """

    def __init__(self, settings: PoolSettings | None = None, **fields: Any) -> None:
        self.settings = dataclasses.replace(settings or PoolSettings(), **fields)
        self.opener = self.settings.opener  # as given
        self._opener = import_function(self.opener) if isinstance(self.opener, str) else self.opener
        s = self.settings
        self.cache, self.threads, self.batch_size, self.device = s.cache, s.threads, s.batch_size, s.device
        self._open: dict[tuple[str, str, str], Generator] = {}
        self._gradient: dict[tuple[str, str], Any] = {}
        self.loads: list[tuple[str, str, str]] = []  # what was opened, in order (tests read it)

    def generator(self, model: str, *, backend: str = "hf", dtype: str = "float32", base_url: str | None = None) -> Generator:
        key = (model, backend, dtype)
        if key not in self._open:
            if self._opener is not None:
                self._open[key] = self._opener(model, backend, dtype)
            elif backend in PROCESS_LIFETIME_BACKENDS:
                self._open[key] = self._process_lifetime(model, backend, dtype)
            else:
                from harness.backends import open_generator

                self._open[key] = open_generator(
                    model, backend=backend, dtype=dtype, threads=self.threads, batch_size=self.batch_size, cache=self.cache,
                    base_url=base_url, device=self.device,
                )
            self.loads.append(key)
        return self._open[key]

    def _process_lifetime(self, model: str, backend: str, dtype: str) -> Generator:
        """A generator whose engine lives as long as the process (vLLM), shared by every pool of the process."""
        from harness.backends import open_generator, with_cache

        key = (model, backend, dtype, self.batch_size, self.threads)
        if key not in _ENGINES:
            _ENGINES[key] = open_generator(model, backend=backend, dtype=dtype, threads=self.threads,
                                           batch_size=self.batch_size, cache=False)
        return with_cache(_ENGINES[key]) if self.cache else _ENGINES[key]

    def gradient_model(self, model: str, *, dtype: str = "float32") -> GradientModel:
        """The HF model object itself (GReaTer's gradients), sharing the weights loaded for decoding."""
        key = (model, dtype)
        if key not in self._gradient:
            gen = self.generator(model, backend="hf", dtype=dtype)
            inner = getattr(gen, "inner", gen)  # a CachedGenerator wraps the HFGenerator
            if not hasattr(inner, "model"):
                raise BenchError(
                    f"model {model!r} has no Hugging Face weights in this process: gradient methods need backend hf"
                )
            self._gradient[key] = inner
        return self._gradient[key]

    def release(self, model: str) -> None:
        """Forget every generator of `model` and free its weights (the next use loads it again); an engine
        that lives as long as the process is only forgotten by this pool."""
        for key in [k for k in self._open if k[0] == model]:
            gen = self._open.pop(key)
            if key[1] not in PROCESS_LIFETIME_BACKENDS or self._opener is not None:
                _free_weights(gen)
        for key in [k for k in self._gradient if k[0] == model]:
            del self._gradient[key]
        gc.collect()

    def close(self) -> None:
        for model in {k[0] for k in self._open}:
            self.release(model)

    def child_settings(self) -> dict[str, Any]:
        """The settings of an equal pool in a child process, as JSON (`PoolSettings.for_child`)."""
        return self.settings.for_child()


def _free_weights(gen: Any) -> None:
    """Close a generator (HF: drop its weights; OpenAI: its connections) so the memory can be returned."""
    close = getattr(gen, "close", None)
    if close is not None:
        close()
