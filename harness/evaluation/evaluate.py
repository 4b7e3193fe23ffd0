"""Zero-shot chain-of-thought evaluation, as the GReaTer paper evaluates, with answers read three ways.

For every example: the instruction goes with the question (after it by default), the model reasons greedily,
then the task's extractor text ("Therefore, the final answer ... is $") is appended and the answer is read:
- `greedy` (the paper's): a short greedy continuation after the extractor, exact match;
- `options`: for closed answer sets, the allowed answer with the highest log-likelihood after the extractor
  (as lm-eval scores multiple choice): always valid, so it measures the reasoning, not the formatting;
- `fallback`: the last allowed answer found in the reasoning text.
All three are reported side by side; the primary one is `options` for closed sets and `greedy` otherwise.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.core.context import Progress, ProgressEvent, no_progress
from harness.core.spec import NO_PRESET
from harness.core.types import READINGS, ChatPrompt, Example, Generator, GenParams, PromptPosition, Task
from harness.evaluation.stats import bootstrap_ci


def build_prompt(example: Example, instruction: str | None, position: PromptPosition | str) -> ChatPrompt:
    """Where the instruction goes. Shared by the evaluator and every optimizer."""
    position = PromptPosition(position)
    q = example.input
    if not instruction:
        return ChatPrompt(q)
    if position is PromptPosition.AFTER:
        return ChatPrompt(f"{q} {instruction}")
    if position is PromptPosition.BEFORE:
        return ChatPrompt(f"{instruction}\n\n{q}")
    return ChatPrompt(q, instruction)


def with_extractor(prompt: ChatPrompt, reasoning: str, extractor: str) -> ChatPrompt:
    """The prompt continued by the model's reasoning and the task's extractor text."""
    head = (prompt.assistant_prefix + reasoning).rstrip()
    joined = f"{head} {extractor}" if head else extractor
    return ChatPrompt(prompt.user, joined)


@dataclass(frozen=True, kw_only=True)
class ReadingResult:
    accuracy: float
    n: int
    ci_low: float
    ci_high: float
    invalid: float  # share of examples with no valid answer under this reading
    top_answer: str | None = None  # the answer this reading gives most often
    top_share: float = float("nan")  # ... and the share of examples it gives it on (near 1: a constant answer)

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "n": self.n, "ci95": [self.ci_low, self.ci_high], "invalid": self.invalid,
                "top_answer": self.top_answer, "top_share": self.top_share}


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    task: str
    instruction: str | None
    primary: str
    readings: dict[str, ReadingResult]
    examples: list[dict[str, Any]]
    tokens_in: int
    tokens_out: int
    calls: int
    mean_reasoning_tokens: float
    seconds: float
    notes: list[str] = field(default_factory=list)
    majority: dict[str, Any] | None = None  # `majority_class` of the examples (closed answer sets)

    @property
    def accuracy(self) -> float:
        return self.readings[self.primary].accuracy

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "instruction": self.instruction,
            "primary": self.primary,
            "accuracy": self.accuracy,
            "readings": {k: v.to_dict() for k, v in self.readings.items()},
            "n": len(self.examples),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "calls": self.calls,
            "mean_reasoning_tokens": self.mean_reasoning_tokens,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
            "majority": self.majority,
        }


def _generate(generator: Generator, prompts: list, params: GenParams, tick: Progress, phase: str, chunk: int = 32) -> list:
    """Generate in chunks of a few backend batches, so a progress display can follow long work."""
    out: list = []
    tokens = 0
    tick(ProgressEvent(phase=phase, done=0, total=len(prompts)))
    for start in range(0, len(prompts), chunk):
        got = generator.generate(prompts[start : start + chunk], params)
        out.extend(got)
        tokens += sum(s.num_tokens for g in got for s in g.samples)
        tick(ProgressEvent(phase=phase, done=len(out), total=len(prompts), tokens=tokens))
    return out


def _reading(correct: list[bool], invalid: list[bool], preds: list[str | None]) -> ReadingResult:
    lo, hi = bootstrap_ci(correct)
    n = len(correct)
    top = Counter(p for p in preds if p is not None).most_common(1)
    return ReadingResult(
        accuracy=sum(correct) / n if n else float("nan"), n=n, ci_low=lo, ci_high=hi,
        invalid=sum(invalid) / n if n else float("nan"),
        top_answer=top[0][0] if top else None, top_share=top[0][1] / n if top else float("nan"),
    )


def majority_class(task: Task, examples: Sequence[Example]) -> dict[str, Any] | None:
    """The most frequent gold answer of a closed answer set and its share: the accuracy of always giving it."""
    if not examples or any(not task.options_for(ex) for ex in examples):
        return None
    answer, count = Counter(ex.target for ex in examples).most_common(1)[0]
    return {"answer": answer, "accuracy": count / len(examples)}


def evaluate(
    task: Task,
    examples: Sequence[Example],
    instruction: str | None,
    generator: Generator,
    *,
    position: PromptPosition | str = NO_PRESET.position,
    max_new_tokens: int = NO_PRESET.max_new_tokens,
    primary: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> EvalResult:
    """Score one instruction on `examples`. Generation is batched through `generator` (and its cache); `progress`
    gets the counts of each phase (reasoning, answers, option scores)."""
    if primary is not None and primary not in READINGS:
        raise ValueError(f"unknown reading {primary!r}: use one of {', '.join(READINGS)}")
    t0 = time.perf_counter()
    notes: list[str] = []
    prompts = [build_prompt(ex, instruction, position) for ex in examples]
    tick = progress or no_progress

    reasoning = _generate(generator, prompts, GenParams(temperature=0.0, max_tokens=max_new_tokens, seed=seed), tick, "reasoning")
    contexts = [with_extractor(p, g.text, task.extractor(ex)) for p, g, ex in zip(prompts, reasoning, examples)]

    answer_params = GenParams(temperature=0.0, max_tokens=task.answer_max_tokens, stop=task.answer_stop, seed=seed)
    answers = _generate(generator, contexts, answer_params, tick, "answers")

    option_scores: list[list[float]] | None = None
    if task.answer_format.closed:
        requests = [(c, o) for c, ex in zip(contexts, examples) for o in task.options_for(ex)]
        tick(ProgressEvent(phase="option scores", done=0, total=len(prompts)))
        try:
            flat = generator.loglikelihood(requests)
        except NotImplementedError as e:
            notes.append(f"options reading skipped: {e}")
        else:
            option_scores, k = [], 0
            for ex in examples:
                m = len(task.options_for(ex))
                option_scores.append(flat[k : k + m])
                k += m
        tick(ProgressEvent(phase="option scores", done=len(prompts), total=len(prompts)))

    records, per_reading = [], {r: ([], [], []) for r in READINGS}
    for i, ex in enumerate(examples):
        opts = task.options_for(ex)
        preds: dict[str, str | None] = {
            "greedy": task.extract(answers[i].text, ex),
            "fallback": task.extract_fallback(reasoning[i].text, ex),
        }
        if option_scores is not None:
            best = int(np.argmax(option_scores[i]))
            preds["options"] = opts[best]
        rec: dict[str, Any] = {
            "id": ex.id,
            "input": ex.input,
            "reasoning": reasoning[i].text,
            "reasoning_tokens": reasoning[i].samples[0].num_tokens,
            "finish_reason": reasoning[i].samples[0].finish_reason,
            "answer_text": answers[i].text,
            "gold": ex.target,
        }
        if option_scores is not None:
            rec["option_loglik"] = dict(zip(opts, option_scores[i]))
        for name, pred in preds.items():
            ok = task.score(pred, ex.target)
            rec[name] = pred
            rec[f"{name}_correct"] = ok
            per_reading[name][0].append(ok)
            per_reading[name][1].append(pred is None)
            per_reading[name][2].append(pred)
        records.append(rec)

    readings = {r: _reading(*per_reading[r]) for r in READINGS if per_reading[r][0]}
    if primary is None:
        primary = "options" if "options" in readings else "greedy"
    elif primary not in readings:
        notes.append(f"reading {primary!r} unavailable for {task.name}; primary is greedy")
        primary = "greedy"
    if readings.get("greedy") and readings["greedy"].invalid == 1.0 and examples:
        notes.append(f"{task.name}: no parseable answer after the extractor on any example (greedy reading)")
    majority = majority_class(task, examples)
    main = readings[primary]
    if len(examples) >= 10 and main.top_share >= 0.95:
        base = f"; always giving the majority class scores {majority['accuracy']:.0%}" if majority else ""
        notes.append(f"{task.name}: the {primary} reading answers {main.top_answer!r} on {main.top_share:.0%} of "
                     f"examples, so its accuracy is mostly that answer's share of the labels{base}")

    gens = list(reasoning) + list(answers)
    tokens_in = sum(g.prompt_tokens for g in gens)
    tokens_out = sum(s.num_tokens for g in gens for s in g.samples)
    # log-likelihood requests reuse the answer contexts (counted above); they add calls, not tokens out
    calls_ll = sum(len(x) for x in option_scores) if option_scores is not None else 0
    n = len(examples)
    return EvalResult(
        task=task.name,
        instruction=instruction,
        primary=primary,
        readings=readings,
        examples=records,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        calls=len(gens) + calls_ll,
        mean_reasoning_tokens=(sum(r["reasoning_tokens"] for r in records) / n) if n else 0.0,
        seconds=time.perf_counter() - t0,
        notes=notes,
        majority=majority,
    )
