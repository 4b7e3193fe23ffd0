"""bfloat16 numerics on a CPU without bfloat16 instructions: for measuring how often bf16 changes GReaTer's choices.

On AMX or AVX512-BF16, oneDNN multiplies bf16 operands with float32 accumulation and rounds the product to bf16.
An AVX2-only CPU has no such kernel: torch's bf16 matrix product falls back to a scalar loop (1 GFLOPS against 38
in float32 on an AMD EPYC Zen 2), so a bf16 GReaTer step would take hours there. Inside `fp32_accumulated_linear()`
every `F.linear` (the projections and the LM head) on bf16 operands runs as a float32 product of their exact
values, rounded to bf16: the AMX product's numbers up to the order of the float32 sums, at float32 speed. Everything
else (attention, norms, activations) stays real bf16; those CPU kernels are vectorised here. It measures agreement
only: the step times it gives are not bf16 step times. `benchmarks/greater_step.py --emulate-bf16` uses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def fp32_accumulated_linear() -> Iterator[None]:
    """Within the block, bf16 `torch.nn.functional.linear` calls compute in float32 and round to bf16 (the
    backward pass alike, through autograd's casts); other dtypes are untouched. Restored on exit."""
    import torch
    import torch.nn.functional as F

    original = F.linear

    def linear(x: Any, weight: Any, bias: Any = None) -> Any:
        if x.dtype is torch.bfloat16 and weight.dtype is torch.bfloat16:
            b = None if bias is None else bias.float()
            return original(x.float(), weight.float(), b).to(torch.bfloat16)
        return original(x, weight, bias)

    F.linear = linear
    try:
        yield
    finally:
        F.linear = original
