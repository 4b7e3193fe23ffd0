"""What the GReaTer tests share: a tiny two-option task, the smoke settings, the tiny model as fixtures (one
thread; float64 for gradient identities), training rows for a prompt, and a short run.

Test modules import the fixtures they use by name (`from greaterkit import gen, one_thread  # noqa: F401`)."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_generator, tiny_model

from harness.core.context import OptimizeContext
from harness.core.types import AnswerFormat, Budget, Example, Splits
from harness.evaluation.evaluate import evaluate
from harness.greater.config import config_for
from harness.greater.gradients import Layout
from harness.greater.optimizer import Greater
from tasks.base import make_task

QUESTIONS = [
    "Is the sky blue? Options: (A) yes (B) no",
    "Does the fox jump over the dog? Options: (A) yes (B) no",
    "Is the answer valid? Options: (A) yes (B) no",
    "Does it walk ten steps forward? Options: (A) yes (B) no",
    "Is the dog lazy? Options: (A) yes (B) no",
    "Is it true? Options: (A) yes (B) no",
]
EXAMPLES = tuple(Example(id=f"q{i}", input=q, target="AB"[i % 2]) for i, q in enumerate(QUESTIONS))
TASK = make_task(
    "custom:tiny", AnswerFormat.LETTER, ("A", "B"),
    lambda **_: Splits(train=EXAMPLES, dev=EXAMPLES[:4], test=EXAMPLES[:4], rule="test rows"),
)
YES_NO = make_task("custom:yn", AnswerFormat.YES_NO, ("Yes", "No"), lambda **_: None)
SMOKE = {"n_train": 4, "steps": 3, "train_reasoning_tokens": 8, "top_k": 8, "keep": 2, "dev_limit": 2,
         "per_intersection": 2, "initial_prompt": "think step by step."}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's matmuls are microseconds: with two threads on a busy machine they wait on each
    other (30x slower here). Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gen():
    return tiny_generator()


@pytest.fixture(scope="module")
def gen64():
    """The tiny model in float64: finite differences and gradient identities without float32 noise."""
    from harness.backends.hf import HFGenerator

    model, tok = tiny_model()
    return HFGenerator("tiny-random-f64", model_obj=model.double(), tokenizer=tok, revision="seed0-f64")


def rows_for(gen, prompt="think step by step.", position="after", reasoning=" the answer is yes.", n=4):
    lay = Layout(gen, position, "Use")
    ids = lay.initial_ids(prompt)
    rows = [lay.row(ex, ids, reasoning, TASK.extractor(ex), ex.target, TASK.options_for(ex)) for ex in EXAMPLES[:n]]
    return lay, ids, rows


def run(gen, tmp_path=None, seed=0, budget=None, progress=None, **over):
    ctx = OptimizeContext.create(scorer=evaluate,
        task_model=gen, gradient_model=gen, seed=seed, max_new_tokens=8, budget=budget or Budget(),
        steps_path=(tmp_path / "steps.jsonl") if tmp_path else None, progress=progress or (lambda _m: None),
    )
    opt = Greater(config_for("smoke", **{**SMOKE, **over}))
    return opt.optimize(TASK, EXAMPLES, EXAMPLES[:4], ctx), ctx

