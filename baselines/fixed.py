"""Fixed instructions (reference points, not optimizers): zero-shot CoT and no instruction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.optimize import OPTIMIZERS
from harness.types import Example, OptimizeResult, PromptCandidate, Task

ZERO_SHOT_COT = "Let's think step by step."


@dataclass(frozen=True, kw_only=True)
class FixedConfig:
    instruction: str = ZERO_SHOT_COT


class FixedPrompt:
    """Returns its instruction unchanged and spends nothing."""

    def __init__(self, config: FixedConfig, name: str = "zs-cot") -> None:
        self.config, self.name = config, name

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: Any) -> OptimizeResult:
        best = PromptCandidate(text=self.config.instruction)
        ctx.log_step({"prompt": best.text})
        return OptimizeResult(best=best, candidates=(best,), cost=ctx.cost)


@OPTIMIZERS.register("zs-cot")
def make_zs_cot(preset: str = "cpu", **overrides: Any) -> FixedPrompt:
    return FixedPrompt(FixedConfig(**overrides), "zs-cot")


@OPTIMIZERS.register("no-instruction")
def make_none(preset: str = "cpu", **overrides: Any) -> FixedPrompt:
    return FixedPrompt(FixedConfig(instruction=""), "no-instruction")
