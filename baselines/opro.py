"""OPRO (Yang et al., ICLR 2024): the optimizer LLM reads scored past instructions and writes better ones.

Each step builds one meta-prompt holding (a) up to 20 earlier instructions with their train scores as
integers 0-100, sorted ascending (worst first, best last, next to the request), (b) 3 random train problems
showing where the instruction goes and their gold answers, and (c) the request for a new, different and
better instruction between <INS> tags. It samples 8 instructions at temperature 1.0, drops duplicates (of
each other and of everything already scored), scores the rest on the train split with the task model, and
adds them to the history. The best train-score instruction is returned.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from baselines.common import (
    Ask,
    Outcomes,
    ask,
    configure,
    format_with_instruction,
    sample,
    snapshot,
)
from baselines.parsing import dedupe, parse_tagged
from harness.core.context import OptimizeContext
from harness.core.types import BenchError, Example, Needs, OptimizeResult, PromptCandidate, PromptPosition, Task

META_PROMPT = """You are improving an instruction for a language model. The instruction is placed where <INS> appears in the problems below; the model then works out the answer.

Instructions tried so far, each with its score: the percentage of training problems the model answered correctly with it (0 to 100). They are listed from the lowest score to the highest.

{history}

Example problems, showing where the instruction goes, with their correct answers:

{exemplars}

Write a new instruction that is different from every instruction listed above and that should score higher than all of them. Keep it short, clear, and useful for every problem of this kind. Reply with the instruction only, starting with <INS> and ending with </INS>."""

HISTORY_ITEM = "Instruction: {text}\nScore: {score}"
EMPTY_INSTRUCTION = "(no instruction)"
TAG = "INS"


@dataclass(frozen=True, kw_only=True)
class OproConfig:
    steps: int = 200  # optimization steps (meta-prompt -> samples -> scores)
    samples_per_step: int = 8  # instructions sampled per step
    temperature: float = 1.0  # optimizer-LLM sampling temperature
    max_history: int = 20  # best earlier instructions shown in the meta-prompt (ascending)
    exemplars: int = 3  # random train problems shown per step
    score_buckets: int = 100  # scores shown as integers 0..score_buckets
    train_size: int | None = None  # train examples every instruction is scored on (None: the whole split)
    initial_instructions: tuple[str, ...] = ("Let's solve the problem.",)  # scored before step 1 ("" = none)
    max_tokens: int = 128  # optimizer-LLM output length per sample
    max_prompt_chars: int = 500  # longer proposals are cut here (OPRO skips instructions over 500 chars)

    def __post_init__(self) -> None:
        for name in ("steps", "samples_per_step", "max_history", "score_buckets", "max_tokens", "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise BenchError(f"opro: {name} must be at least 1")
        if self.exemplars < 0 or self.temperature <= 0:
            raise BenchError("opro: exemplars must be >= 0 and temperature > 0 (OPRO samples)")
        if self.train_size is not None and self.train_size < 1:
            raise BenchError("opro: train_size must be at least 1 (or None for the whole split)")
        if not self.initial_instructions:
            raise BenchError("opro: give at least one initial instruction ('' means none)")
        object.__setattr__(self, "initial_instructions", tuple(self.initial_instructions))


PRESETS = {
    # The paper's settings (Yang et al. 2024, BBH): 200 steps x 8 samples, scored on the whole train split.
    "paper": OproConfig(),
    # One BBH task with smollm2-135m optimizing itself on 2 cores, 128-token reasoning, in ~15 min with
    # run_optimize's dev and test scoring: 3 steps x 8 samples (<= 25 instructions incl. the initial one)
    # scored on 16 train examples: <= 400 scored answers (~1-1.5 s each) and 3 optimizer calls.
    "cpu": OproConfig(steps=3, train_size=16, max_tokens=96),
    # Seconds with a scripted model (tests): 2 steps x 3 samples on 4 examples.
    "smoke": OproConfig(steps=2, samples_per_step=3, train_size=4, max_tokens=48),
}


def build_meta_prompt(
    history: Sequence[tuple[str, float]], exemplars: Sequence[Example], position: PromptPosition | str, config: OproConfig
) -> str:
    """The meta-prompt: the best `max_history` scored instructions in ascending order, then the exemplars."""
    ranked = sorted(enumerate(history), key=lambda t: (t[1][1], t[0]))  # ascending; ties keep scoring order
    shown = [h for _, h in ranked][-config.max_history :]
    lines = [
        HISTORY_ITEM.format(text=text or EMPTY_INSTRUCTION, score=round(score * config.score_buckets))
        for text, score in shown
    ]
    return META_PROMPT.format(
        history="\n\n".join(lines) or "(none yet)",
        exemplars="\n\n".join(format_with_instruction(ex, position, f"<{TAG}>") for ex in exemplars) or "(none)",
    )


class Opro:
    name = "opro"
    needs = Needs(optimizer_llm=True)  # an LLM writes its prompts (the task model unless the run names another)

    def __init__(self, config: OproConfig) -> None:
        self.config = config

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        cfg = self.config
        outcomes = Outcomes(task, ctx)
        state = ctx.resume()
        if state is None:
            subset = sample(ctx.rng, train, cfg.train_size) if cfg.train_size else list(train)
            history: list[list[Any]] = []  # [instruction, train score, step]
            step, tally = 0, Counter()
        else:
            by_id = {ex.id: ex for ex in train}
            subset = [by_id[i] for i in state["subset"]]
            history, step, tally = state["history"], state["step"], Counter(state["tally"])

        def save(record: dict[str, Any]) -> None:
            ctx.log_step(
                {"method": self.name, **record, "best": _best(history, ctx)[0] if history else None,
                 **({"train_accuracy": _best(history, ctx)[1],
                     "selection_score": ctx.selection_score(*_best(history, ctx)[:2])} if history else {})},
                # no per-example memory: OPRO never scores an instruction twice
                snapshot({"subset": [ex.id for ex in subset], "history": history, "step": step, "tally": dict(tally)}),
            )

        if state is None:  # step 0: the initial instructions
            for text in dedupe(cfg.initial_instructions):
                if ctx.out_of_budget():
                    break
                history.append([text, outcomes.accuracy(text, subset), 0])
            save({"phase": "initial", "scored": [h[:2] for h in history]})

        while step < cfg.steps and not ctx.out_of_budget():
            step += 1
            exemplars = sample(ctx.rng, train, cfg.exemplars)
            meta = build_meta_prompt([(h[0], h[1]) for h in history], exemplars, ctx.position, cfg)
            how = Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens, n=cfg.samples_per_step)
            [proposals] = ask(ctx, [meta], how, lambda t: parse_tagged(t, TAG, max_chars=cfg.max_prompt_chars), tally)
            fresh = dedupe(proposals, seen=[h[0] for h in history])
            scored = []
            for text in fresh:
                if ctx.out_of_budget():
                    break
                history.append([text, outcomes.accuracy(text, subset), step])
                scored.append(history[-1][:2])
            best = _best(history, ctx)
            ctx.progress(f"opro step {step}/{cfg.steps}: {len(fresh)} new of {len(proposals)} parsed; "
                         f"best {best[1]:.2f} {best[0]!r}")
            save({"phase": "step", "proposed": proposals, "duplicates": len(proposals) - len(fresh), "scored": scored})

        if not history:  # out of budget before anything was scored
            first = PromptCandidate(text=cfg.initial_instructions[0])
            return OptimizeResult(best=first, cost=ctx.cost, meta={"steps": 0, "parses": dict(tally)})
        best = _best(history, ctx)
        ranked = sorted(history, key=lambda h: -ctx.selection_score(h[0], h[1]))  # stable: earlier first on ties
        return OptimizeResult(
            best=PromptCandidate(text=best[0], score=best[1], meta={"step": best[2], "train_size": len(subset)}),
            candidates=tuple(PromptCandidate(text=t, score=sc, meta={"step": k}) for t, sc, k in ranked[: cfg.max_history]),
            cost=ctx.cost,
            meta={"steps": step, "scored": len(history), "parses": dict(tally), "train_size": len(subset)},
        )


def _best(history: Sequence[Sequence[Any]], ctx: OptimizeContext) -> Sequence[Any]:
    """The highest train score (less the run's length penalty: `OptimizeContext.selection_score`); the earliest
    instruction among equals."""
    return max(history, key=lambda h: ctx.selection_score(h[0], h[1])) if history else ()


def make(preset: str = "cpu", **overrides: Any) -> Opro:
    """OPRO (Yang et al. 2024): an LLM sees past prompts with their scores and writes better ones, step after step."""
    return Opro(configure("opro", PRESETS, preset, overrides))
