"""GReaTer's step log pinned: two short runs on the tiny model write exactly the steps.jsonl rows recorded in
tests/golden/greater_steps.jsonl (every candidate, grad score, re-scored prompt, choice, kept prompt, RNG state
and token count), and a run resumed from the first rows of that file writes the rest of it.

The golden rows were recorded before GReaTer's step was split into named phases over a typed state, so a
refactor that changes a candidate, a choice or a key of the log fails here. Wall-clock fields (`seconds`,
`cost.wall_seconds`) are left out; floats are compared to 1e-6 relative, everything else exactly.

Re-record (only when a behaviour change is intended): `python tests/test_greater_golden.py --write`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from greaterkit import QUESTIONS
from tiny import tiny_generator

from harness.core.context import OptimizeContext
from harness.core.types import AnswerFormat, Example, Splits
from harness.evaluation.evaluate import evaluate
from harness.greater.optimizer import Greater, config_for
from tasks.base import make_task

GOLDEN = Path(__file__).parent / "golden" / "greater_steps.jsonl"
EXAMPLES = tuple(Example(id=f"q{i}", input=q, target="AB"[i % 2]) for i, q in enumerate(QUESTIONS[:5]))
TASK = make_task(
    "custom:golden", AnswerFormat.LETTER, ("A", "B"),
    lambda **_: Splits(train=EXAMPLES, dev=EXAMPLES[:3], test=EXAMPLES[:3], rule="test rows"),
)
SMALL = {"n_train": 3, "train_reasoning_tokens": 8, "top_k": 8, "keep": 2, "dev_limit": 2, "per_intersection": 2}
# the paper's readings over three token positions; then the small-model readings and the task model's re-scoring
# over a short prompt, long enough to reach its end, grow it and wrap
RUNS = {
    "paper": {**SMALL, "steps": 3, "initial_prompt": "think step by step."},
    "small": {**SMALL, "steps": 6, "initial_prompt": "think.", "max_prompt_tokens": 4, "mistake": "options",
              "loss": "options", "tie_break": "loss", "rescore_with": "task_model"},
}
RUNS["early"] = {**RUNS["small"], "steps": 4, "rescore_top": 8, "top_k": 20}  # "." makes the shortlist: early accepts


def run(gen, name: str, steps_path: Path) -> None:
    ctx = OptimizeContext.create(scorer=evaluate, task_model=gen, gradient_model=gen, seed=3, max_new_tokens=8,
                                 steps_path=steps_path)
    Greater(config_for("smoke", **RUNS[name])).optimize(TASK, EXAMPLES, EXAMPLES[:3], ctx)


def stable(row: dict) -> dict:
    """A step row without its wall-clock fields."""
    row = {k: v for k, v in row.items() if k != "seconds"}
    if "cost" in row:
        row["cost"] = {k: v for k, v in row["cost"].items() if k != "wall_seconds"}
    return row


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def golden() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in GOLDEN.read_text().splitlines():
        entry = json.loads(line)
        out.setdefault(entry["run"], []).append(entry["row"])
    return out


def same(got, want) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return got == pytest.approx(want, rel=1e-6, abs=1e-12)
    if isinstance(want, dict) and isinstance(got, dict):
        return list(got) == list(want) and all(same(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    return type(got) is type(want) and got == want


@pytest.fixture(scope="module")
def gen():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_generator()
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(RUNS))
def test_step_log_equals_the_recorded_one(gen, name, tmp_path):
    path = tmp_path / "steps.jsonl"
    run(gen, name, path)
    got, want = rows(path), golden()[name]
    assert [r.get("kind") for r in got] == [r.get("kind") for r in want]
    for i, (g, w) in enumerate(zip(got, want)):
        assert same(stable(g), stable(w)), f"{name}: step row {i} differs"


def test_the_golden_runs_take_every_branch():
    """What the pinned runs cover: both re-scorers, a grown prompt, a wrap, an early accept, the current token
    winning against fresh ones and a fresh one winning."""
    steps = [r for rs in golden().values() for r in rs if r.get("kind") == "step"]
    assert {s["rescored_by"] for s in steps} >= {"gradient_model", "task_model"}
    assert any(s["state"]["grown"] for s in steps)
    assert any(s["state"]["pos"] == 0 and s["index"] > 0 for s in steps)
    assert any(s["early_accept"] for s in steps)
    assert any(s["chosen"]["text"] == s["prompt_before"] for s in steps)
    assert any(s["chosen"]["text"] != s["prompt_before"] for s in steps)


@pytest.mark.parametrize("name", list(RUNS))
def test_resume_from_a_partial_recorded_log(gen, name, tmp_path):
    """A step log cut after its second row (as a crash leaves it) resumes into the recorded rest."""
    want = golden()[name]
    path = tmp_path / "steps.jsonl"
    lines = [json.dumps(r) for r in want[:2]]
    path.write_text("\n".join(lines) + "\n")
    run(gen, name, path)
    got = rows(path)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got[2:], want[2:]), start=2):
        assert same(stable(g), stable(w)), f"{name}: resumed step row {i} differs"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    torch.set_num_threads(1)
    generator = tiny_generator()
    GOLDEN.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, GOLDEN.open("w") as out:
        for run_name in RUNS:
            log = Path(tmp) / f"{run_name}.jsonl"
            run(generator, run_name, log)
            for r in rows(log):
                out.write(json.dumps({"run": run_name, "row": r}) + "\n")
    print(f"wrote {GOLDEN}")
