"""TextGrad (Yuksekgonul et al., 2024), prompt-optimization setting: the instruction is a variable updated
by "textual gradient descent".

Each step takes a minibatch of 3 train examples and runs the task model with the current instruction. The
loss is the deterministic exact-match check against the gold answer (no LLM judge: the original uses one for
most BBH tasks, which inflates numbers). Backward: for every example the optimizer LLM is shown the output and
the check's verdict and asked for feedback on the instruction (critique only, no rewrite). Step: it rewrites
the instruction from the feedback, between <IMPROVED_VARIABLE> tags. Validation revert: the new instruction
is kept only if its dev accuracy does not drop. Schedule: 3 epochs of 4 steps (12 updates).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from baselines.common import Ask, Outcomes, ask, configure, sample, shorten, snapshot
from baselines.parsing import normalise, parse_tagged, parse_text
from harness.core.context import OptimizeContext
from harness.core.types import BenchError, Example, Needs, OptimizeResult, PromptCandidate, Task

CRITIQUE_PROMPT = """You are helping to improve an instruction that a language model reads together with each question before it answers.

Instruction: "{instruction}"

Question: {question}

The model's response: {reasoning}
The model's final answer: {prediction}
The correct answer: {gold}
Exact-match check: the final answer is {verdict}.

Explain how the instruction should change so that the model answers questions like this one correctly. Give feedback on the instruction only; do not write a new instruction."""

STEP_PROMPT = """You are improving an instruction that a language model reads together with each question before it answers.

Current instruction:
<VARIABLE>{instruction}</VARIABLE>

Feedback on the instruction, from recent questions:
<FEEDBACK>
{feedback}
</FEEDBACK>

Rewrite the instruction so that it addresses the feedback. It must stay general: it will be used for every question of this kind. Reply with the improved instruction only, between <IMPROVED_VARIABLE> and </IMPROVED_VARIABLE>."""

TAG = "IMPROVED_VARIABLE"


@dataclass(frozen=True, kw_only=True)
class TextGradConfig:
    epochs: int = 3
    steps_per_epoch: int = 4  # minibatches per epoch (the train split is reshuffled every epoch)
    batch_size: int = 3
    dev_size: int | None = None  # dev examples of the validation revert (None: the whole dev split)
    initial_instruction: str = "Let's think step by step."
    temperature: float = 0.0  # optimizer-LLM decoding (TextGrad's engines run at temperature 0)
    critique_correct: bool = True  # feedback on every minibatch output, as TextGrad (False: wrong ones only)
    feedback_tokens: int = 200  # optimizer-LLM output length of one critique
    max_tokens: int = 200  # optimizer-LLM output length of the rewrite
    feedback_chars: int = 600  # each critique is cut to this many characters in the step prompt
    reasoning_chars: int = 400  # how much of the task model's response a critique request shows
    max_prompt_chars: int = 600

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "feedback_tokens", "max_tokens", "feedback_chars",
                     "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise BenchError(f"textgrad: {name} must be at least 1")
        if self.dev_size is not None and self.dev_size < 1:
            raise BenchError("textgrad: dev_size must be at least 1 (or None for the whole dev split)")
        if self.temperature < 0 or self.reasoning_chars < 0:
            raise BenchError("textgrad: temperature and reasoning_chars must be >= 0")


PRESETS = {
    # The paper's schedule: 3 epochs x 4 steps of 3 examples, revert on the whole dev split (BBH: 100).
    "paper": TextGradConfig(),
    # One BBH task with smollm2-135m optimizing itself on 2 cores, 128-token reasoning, in ~15 min with
    # run_optimize's dev and test scoring: the paper's 3 epochs x 4 steps x 3 examples, validation revert on
    # 20 dev examples: <= 20 + 12 x 23 = 296 scored answers (~1-1.5 s each), 24 batched optimizer calls
    # (3 critiques of <= 128 tokens, 1 rewrite of <= 128 tokens per step).
    "cpu": TextGradConfig(
        dev_size=20, feedback_tokens=128, max_tokens=128, reasoning_chars=300, feedback_chars=400,
    ),
    # Seconds with a scripted model (tests): 2 epochs x 2 steps of 2 examples, 4 dev examples.
    "smoke": TextGradConfig(epochs=2, steps_per_epoch=2, batch_size=2, dev_size=4, feedback_tokens=40, max_tokens=40),
}


class TextGrad:
    name = "textgrad"
    needs = Needs(optimizer_llm=True)  # an LLM writes its prompts (the task model unless the run names another)

    def __init__(self, config: TextGradConfig) -> None:
        self.config = config

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        cfg = self.config
        by_id = {ex.id: ex for ex in [*train, *dev]}
        outcomes = Outcomes(task, ctx, keep_reasoning=True, reasoning_chars=cfg.reasoning_chars)
        state = ctx.resume()
        if state is None:
            dev_set = sample(ctx.rng, dev, cfg.dev_size) if cfg.dev_size else list(dev)
            st: dict[str, Any] = {"dev": [ex.id for ex in dev_set], "epoch": 0, "step": 0, "order": None,
                                  "current": cfg.initial_instruction, "current_dev": None, "accepted": 0,
                                  "reverted": 0, "tally": {}}
        else:
            st = state
            outcomes.from_state(st["outcomes"])
        dev_set = [by_id[i] for i in st["dev"]]
        tally = Counter(st["tally"])

        def save(record: dict[str, Any]) -> None:
            st["tally"], st["outcomes"] = dict(tally), outcomes.to_state()
            ctx.log_step({"method": self.name, **record}, snapshot(st))

        if st["current_dev"] is None and not ctx.out_of_budget():
            st["current_dev"] = outcomes.accuracy(st["current"], dev_set)
            save({"phase": "initial", "prompt": st["current"], "dev_accuracy": st["current_dev"],
                  "selection_score": ctx.selection_score(st["current"], st["current_dev"])})

        while st["epoch"] < cfg.epochs and st["current_dev"] is not None and not ctx.out_of_budget():
            if st["order"] is None:  # a new epoch: reshuffle the train split
                st["order"] = [ex.id for ex in sample(ctx.rng, train, len(train))]
            start = st["step"] * cfg.batch_size
            batch = [by_id[i] for i in st["order"][start : start + cfg.batch_size]]
            where = {"epoch": st["epoch"], "batch": st["step"]}
            if batch:
                record = self.step(batch, dev_set, outcomes, st, ctx, tally)
            else:
                record = {"update": "none (train split used up)"}
            st["step"] += 1
            if st["step"] >= cfg.steps_per_epoch or not batch:
                st["epoch"], st["step"], st["order"] = st["epoch"] + 1, 0, None
            save({"phase": "step", **where, **record, "dev_accuracy": st["current_dev"],  # the kept instruction's
                  "selection_score": ctx.selection_score(st["current"], st["current_dev"])})

        meta: dict[str, Any] = {"accepted": st["accepted"], "reverted": st["reverted"], "parses": dict(tally),
                                "dev_size": len(dev_set), "epochs_done": st["epoch"]}
        if st["current_dev"] is not None:
            key = "dev_accuracy" if len(dev_set) == len(dev) else "dev_subset_accuracy"
            meta[key] = st["current_dev"]
        best = PromptCandidate(text=st["current"], score=st["current_dev"])
        return OptimizeResult(best=best, candidates=(best,), cost=ctx.cost, meta=meta)

    def step(
        self, batch: list[Example], dev_set: list[Example], outcomes: Outcomes, st: dict[str, Any], ctx: OptimizeContext,
        tally: Counter,
    ) -> dict[str, Any]:
        """One update: forward on the minibatch, critiques, rewrite, validation revert. Returns the record."""
        cfg = self.config
        current = st["current"]
        records = outcomes.records(current, batch)
        right = sum(r["correct"] for r in records)
        base: dict[str, Any] = {"batch_correct": right, "train_accuracy": right / len(records)}  # the curve key
        shown = [r for r in records if cfg.critique_correct or not r["correct"]]
        if not shown:
            return {**base, "update": "none (no wrong answers to critique)"}
        if ctx.out_of_budget():
            return {**base, "update": "none (budget)"}
        critique = Ask(temperature=cfg.temperature, max_tokens=cfg.feedback_tokens)
        metas = [
            CRITIQUE_PROMPT.format(
                instruction=current, question=r["input"], reasoning=r["reasoning"] or "(empty)",
                prediction=r["prediction"] or "(none found)", gold=r["gold"],
                verdict="correct" if r["correct"] else "wrong",
            )
            for r in shown
        ]
        replies = ask(ctx, metas, critique, lambda t: parse_text(t, max_chars=cfg.feedback_chars), tally)
        feedback = [f for per_example in replies for f in per_example]
        base["feedback"] = feedback
        if not feedback:
            return {**base, "update": "none (no usable feedback)"}
        if ctx.out_of_budget():
            return {**base, "update": "none (budget)"}
        rewrite = Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        listed = "\n\n".join(f"- {shorten(f, cfg.feedback_chars)}" for f in feedback)
        text = STEP_PROMPT.format(instruction=current, feedback=listed)
        [proposed] = ask(ctx, [text], rewrite, lambda t: parse_tagged(t, TAG, max_chars=cfg.max_prompt_chars), tally)
        if not proposed:
            return {**base, "update": "none (rewrite unparseable)"}
        new = proposed[0]
        if normalise(new) == normalise(current):
            return {**base, "proposed": new, "update": "none (unchanged)"}
        if ctx.out_of_budget():
            return {**base, "proposed": new, "update": "none (budget)"}
        new_dev = outcomes.accuracy(new, dev_set)
        keep = ctx.selection_score(new, new_dev) >= ctx.selection_score(st["current"], st["current_dev"])
        ctx.progress(f"textgrad epoch {st['epoch'] + 1} step {st['step'] + 1}: dev {st['current_dev']:.2f} -> "
                     f"{new_dev:.2f} {'kept' if keep else 'reverted'}: {new!r}")
        if keep:
            st["current"], st["current_dev"], st["accepted"] = new, new_dev, st["accepted"] + 1
        else:
            st["reverted"] += 1
        return {**base, "proposed": new, "proposed_dev_accuracy": new_dev, "update": "kept" if keep else "reverted"}


def make(preset: str = "cpu", **overrides: Any) -> TextGrad:
    """TextGrad (Yuksekgonul et al. 2024): an LLM's feedback on failures is applied as a textual gradient step, gated on validation."""
    return TextGrad(configure("textgrad", PRESETS, preset, overrides))
