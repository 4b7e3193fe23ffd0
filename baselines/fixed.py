"""Fixed instructions (reference points, not optimizers): zero-shot CoT and no instruction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.core.context import OptimizeContext
from harness.core.types import ZERO_SHOT_COT, Example, Needs, OptimizeResult, PromptCandidate, Task


@dataclass(frozen=True, kw_only=True)
class FixedConfig:
    instruction: str = ZERO_SHOT_COT


class FixedPrompt:
    """Returns its instruction unchanged and spends nothing."""

    needs = Needs()

    def __init__(self, config: FixedConfig, name: str = "zs-cot") -> None:
        self.config, self.name = config, name

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        best = PromptCandidate(text=self.config.instruction)
        ctx.resume()
        if not ctx.steps:  # a resumed cell has logged its one step already
            ctx.log_step({"prompt": best.text})
        return OptimizeResult(best=best, candidates=(best,), cost=ctx.cost)


def make_zs_cot(preset: str = "cpu", **overrides: Any) -> FixedPrompt:
    """Zero-shot chain of thought (Kojima et al. 2022): "Let's think step by step.", unchanged (the reference)."""
    return FixedPrompt(FixedConfig(**overrides), "zs-cot")


def make_none(preset: str = "cpu", **overrides: Any) -> FixedPrompt:
    """No instruction at all (a reference row; not part of `--methods all`)."""
    return FixedPrompt(FixedConfig(instruction=""), "no-instruction")
