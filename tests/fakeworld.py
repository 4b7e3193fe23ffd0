"""A synthetic yes/no task and scripted task/optimizer models for the optimizer tests (no model weights).

The task model answers a question correctly when a deterministic hash of (instruction, question) falls
under the instruction's "quality" (by default: more for instructions that mention steps or checking), so
different instructions score differently and the same instruction always scores the same. The optimizer
model's replies come from a script function; `messy_optimizer` mixes clean, untagged, empty, partial and
over-long outputs like a small model does.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from functools import partial

from harness.backends.fake import ScriptedGenerator
from harness.core.context import OptimizeContext
from harness.core.types import AnswerFormat, Budget, Example, GenParams, Splits
from harness.evaluation.evaluate import evaluate
from tasks.base import make_task

OPTIONS_TAIL = "\nOptions:\n- Yes\n- No"


def _example(split: str, i: int) -> Example:
    n = 3 * i + (7 if split == "dev" else 11 if split == "test" else 0)
    return Example(id=f"{split}{i}", input=f"Is {n} an even number?{OPTIONS_TAIL}", target="Yes" if n % 2 == 0 else "No")


def _load(sizes: tuple[int, int, int], data_dir: object = None, seed: object = None) -> Splits:
    train, dev, test = (tuple(_example(name, i) for i in range(k)) for name, k in zip(("train", "dev", "test"), sizes))
    return Splits(train=train, dev=dev, test=test, rule="synthetic parity questions")


def parity_task(train: int = 12, dev: int = 6, test: int = 6):
    return make_task("custom:parity", AnswerFormat.YES_NO, ("Yes", "No"), partial(_load, (train, dev, test)))


def default_quality(instruction: str) -> float:
    """0.25 for no instruction, up to 1.0 for instructions that mention steps, checking and care."""
    words = instruction.lower()
    return min(1.0, 0.25 + 0.25 * sum(w in words for w in ("step", "check", "careful")))


def split_user(rendered: str) -> tuple[str, str, str]:
    """(question, instruction, assistant text) of a rendered task prompt (position `after`)."""
    user, _, assistant = rendered.removeprefix("USER: ").partition("\nASSISTANT: ")
    question, _, instruction = user.partition(OPTIONS_TAIL)
    return question, instruction.strip(), assistant


def is_task_prompt(rendered: str) -> bool:
    return bool(re.match(r"USER: Is \d+ an even number\?", rendered))


def task_reply(quality: Callable[[str], float] = default_quality) -> Callable[[str, GenParams, int], str]:
    def reply(rendered: str, params: GenParams, index: int) -> str:
        question, instruction, assistant = split_user(rendered)
        if "is $" in assistant:  # the answer after the extractor: read the reasoning's verdict
            m = re.search(r"so the answer is (Yes|No)", assistant)
            return (m.group(1) if m else "Maybe") + "\nmore text"
        n = int(re.search(r"\d+", question).group())
        gold = "Yes" if n % 2 == 0 else "No"
        h = zlib.crc32(f"{instruction}|{question}".encode()) % 1000 / 1000
        answer = gold if h < quality(instruction) else ("No" if gold == "Yes" else "Yes")
        return f"{n} divided by two, so the answer is {answer}."

    return reply


MESSY = (
    "<INS>Think step by step and check each step.</INS>",
    "Solve it carefully, one step at a time.",
    "",
    "<INS>" + "Check the number very carefully " * 40,
    "Reasons: <START>The prompt does not ask to check the last digit.<END> <START>It is vague.<END>",
    "<IMPROVED_VARIABLE>Look at the last digit and check it step by step.</IMPROVED_VARIABLE>",
    "<INS></INS>",
    "Answer quickly.",
)


def messy_optimizer(rendered: str, params: GenParams, index: int) -> str:
    """A deterministic pick among messy outputs, varying with the prompt, the sampling seed and the sample."""
    return MESSY[zlib.crc32(f"{rendered}|{params.seed}|{index}".encode()) % len(MESSY)]


def scripted_models(optimizer: Callable[[str, GenParams, int], str] = messy_optimizer, quality=default_quality):
    return ScriptedGenerator(task_reply(quality), identity="fake-task"), ScriptedGenerator(optimizer, identity="fake-optimizer")


def make_ctx(task_model=None, optimizer_model=None, *, seed: int = 0, budget: Budget | None = None, steps_path=None,
             max_new_tokens: int = 32, **kw):
    """An OptimizeContext over the scripted models (or the ones given)."""
    if task_model is None:
        task_model, optimizer_model = scripted_models()
    return OptimizeContext.create(scorer=evaluate,
        task_model=task_model, optimizer_model=optimizer_model, seed=seed, budget=budget or Budget(),
        max_new_tokens=max_new_tokens, steps_path=steps_path, **kw,
    )


class _InProcessEntryPoint:
    """Stands for an installed `greater_bench.methods` entry point whose factory lives in a test."""

    def __init__(self, name, factory):
        self.name, self.value, self._factory = name, f"<test>:{name}", factory

    def load(self):
        return self._factory


def add_method(monkeypatch, name, factory):
    """Register `factory` as method `name` for one test, as an installed entry point would."""
    import harness.core.methods as methods

    real = methods.method_entry_points

    def with_extra():
        reg = real()
        if name not in reg:
            reg.add(name, _InProcessEntryPoint(name, factory))
        return reg

    monkeypatch.setattr(methods, "method_entry_points", with_extra)
