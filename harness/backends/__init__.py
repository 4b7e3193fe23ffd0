"""Generation backends behind the `Generator` protocol, and one function that opens them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness.core.types import BenchError, Generator

BACKENDS = ("hf", "vllm", "openai", "auto")


def resolve_backend(backend: str) -> str:
    """`auto` is vLLM when it is installed, else HF; other names are checked and returned as they are."""
    if backend not in BACKENDS:
        raise BenchError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)} (--backend or BENCH_BACKEND)")
    if backend == "auto":
        from harness.backends.vllm import available

        return "vllm" if available() else "hf"
    return backend


def device_tag(device: str | None) -> str:
    """What a model identity adds for its device: nothing on the CPU, else "@" and the device type ("@cuda" for
    cuda:1). Identities key the response cache, and GPU kernels give slightly different numbers than CPU ones,
    so a GPU run must not be served CPU responses (nor the reverse). Run ids do not contain identities."""
    kind = (device or "cpu").split(":")[0]
    return "" if kind == "cpu" else f"@{kind}"


# CPU flags with native half-precision matrix products (oneDNN uses them); without, torch emulates them.
NATIVE_HALF = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags (Linux), or None where they cannot be read."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def half_precision_note(dtype: str, device: str | None, flags: set[str] | None = None) -> str | None:
    """One line when `dtype` would run on a CPU that has no native instructions for it.

    Measured on an AMD EPYC (Zen 2, AVX2 only): a bfloat16 matrix product ran at 1 GFLOPS against 38 in
    float32, and decoding slowed down accordingly; on CPUs with AVX512-BF16 or AMX, bf16 is the faster dtype.
    """
    if dtype not in NATIVE_HALF or (device or "cpu").split(":")[0] != "cpu":
        return None
    import torch

    if device is None and torch.cuda.is_available():
        return None
    flags = cpu_flags() if flags is None else flags
    if flags is None or flags & set(NATIVE_HALF[dtype]):
        return None
    return (f"note: this CPU has no {' or '.join(NATIVE_HALF[dtype])} instructions: {dtype} matrix products are emulated "
            f"and run far slower than float32 (38 vs 1 GFLOPS measured on an AVX2-only CPU); use --dtype float32 here")


def open_generator(
    model: str,
    *,
    backend: str = "hf",
    dtype: str = "float32",
    threads: int | None = None,
    batch_size: int = 8,
    base_url: str | None = None,
    cache: bool = True,
    device: str | None = None,
    **kwargs: Any,
) -> Generator:
    """Open `model` on `backend`, wrapped in the shared response cache unless `cache` is False.

    `device` is the torch device of the hf backend (`harness.backends.hf.resolve_device`; None: cuda, else
    mps, else cpu); vllm and openai place their models themselves and ignore it.
    """
    backend = resolve_backend(backend)
    if backend in ("hf", "vllm") and (note := half_precision_note(dtype, device)):
        print(note, file=sys.stderr, flush=True)
    if backend == "hf":
        from harness.backends.hf import HFGenerator

        gen: Generator = HFGenerator(model, dtype=dtype, threads=threads, batch_size=batch_size, device=device)
    elif backend == "vllm":
        from harness.backends.vllm import VLLMGenerator

        gen = VLLMGenerator(model, dtype=dtype, threads=threads, batch_size=batch_size, **kwargs)
    elif backend == "openai":
        if not base_url:
            raise BenchError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        from harness.backends.openai import OpenAIGenerator

        gen = OpenAIGenerator(model, base_url, **kwargs)
    return with_cache(gen) if cache else gen


def with_cache(gen: Generator) -> Generator:
    """`gen` behind the shared response cache ($BENCH_CACHE_DIR/responses.sqlite)."""
    from harness.backends.cache import CachedGenerator, ResponseCache
    from harness.backends.models import cache_dir

    return CachedGenerator(gen, ResponseCache(cache_dir() / "responses.sqlite"))
