"""PE2 with scripted models: what reaches the optimizer LLM (template, failures, both stages), batching, the
beam over all rounds, the stop at dev 1.0, and the parsing and guards of its proposals."""

from __future__ import annotations

import random
import re

import pytest
from pe2evokit import SEED_PROMPT, SPLITS, STAGE2, cycle, run, user_texts

from baselines import pe2
from harness.core.types import PromptPosition

# ------------------------------------------------------------------------------------------ PE2


def test_pe2_template_reaches_the_optimizer_with_the_prompt_in_place():
    assert pe2.render_template("Be brief.", PromptPosition.AFTER).startswith("Q: <input> Be brief.\nA: ")
    assert pe2.render_template("Be brief.", PromptPosition.BEFORE).startswith("Q: Be brief.\n\n<input>\nA: ")
    assert pe2.render_template("Be brief.", PromptPosition.ASSISTANT).startswith("Q: <input>\nA: Be brief. ")


def test_pe2_failures_and_template_reach_both_stages():
    def optimizer(rendered, params, i):
        return "<PROMPT>Check the last digit.</PROMPT>" if STAGE2 in rendered else "ANALYSIS: the digit matters."

    result, ctx, om = run("pe2", optimizer=optimizer, quality=lambda t: 0.5, rounds=1)
    stage1 = [t for t in user_texts(om) if STAGE2 not in t]
    stage2 = [t for t in user_texts(om) if STAGE2 in t]
    assert len(stage1) == len(stage2) == 2  # smoke: 2 proposals from the one beam prompt
    template = pe2.render_template(SEED_PROMPT, PromptPosition.AFTER)
    train = {ex.id: ex for ex in SPLITS.train}
    [expand] = [s for s in ctx.steps if s["phase"] == "expand"]
    for text, child in zip(stage1, expand["children"]):
        assert f'Current prompt:\n"{SEED_PROMPT}"' in text and template in text
        blocks = re.findall(r"Example (\S+)\nInput: (.*?)\nModel's reasoning: (.*?)\nModel's final answer: (.*?)\n"
                            r"Label: (\S+)", text, re.DOTALL)
        assert [b[0] for b in blocks] == child["batch"] and len(blocks) == 2  # smoke: batch of 2
        for ex_id, question, reasoning, answer, label in blocks:
            assert question == train[ex_id].input and label == train[ex_id].target
            assert answer != label and "divided by two" in reasoning  # failures only, with the model's reasoning
    for s1, s2 in zip(stage1, stage2):
        assert s2.startswith(s1) and "ANALYSIS: the digit matters." in s2  # stage 2 continues stage 1
        assert "fewer than 50 words" in s2 and "<PROMPT>" in s2
    params = [p for _, p in om.calls]
    assert [(p.temperature, p.max_tokens) for p in params] == [(0.5, 40), (0.7, 40)]  # one batch per stage
    # mining walked the run's fixed order in chunks of 4 until it had 2 failures; the curve key is that prefix's accuracy
    state = expand["state"]
    outcome = state["mining"]["memory"][SEED_PROMPT]
    used = expand["train_used"]["0"]
    assert set(outcome) == set(state["order"][:used]) and used % 4 == 0  # a prefix of the order, whole chunks
    wrong = [not outcome[i][0] for i in state["order"][:used]]
    assert sum(wrong[:-4]) < 2 <= sum(wrong)  # the last chunk was the one that reached 2 failures
    assert expand["train_accuracy"] == 1 - sum(wrong) / used
    assert {c.text for c in result.candidates} == {SEED_PROMPT, "Check the last digit."}  # the 2nd proposal: a duplicate
    assert result.meta["parses"]["duplicate"] == 1 and result.best.score == max(c.score for c in result.candidates)


def test_pe2_batching_modes():
    mined = [("a", {"correct": True}), ("b", {"correct": False}), ("c", {"correct": False})]
    rng = random.Random(0)
    hard = pe2.make("smoke", batch=5).failure_batch(mined, rng)
    assert sorted(i for i, _ in hard) == ["b", "c"]  # failures only, each once
    weighted = pe2.make("smoke", batch=5, batching="hard_weighted").failure_batch(mined, rng)
    assert len(weighted) == 5 and {i for i, _ in weighted} <= {"b", "c"}  # failures, with replacement
    anything = pe2.make("smoke", batch=3, batching="random").failure_batch(mined, rng)
    assert sorted(i for i, _ in anything) == ["a", "b", "c"]
    assert pe2.make("smoke").failure_batch(mined[:1], rng) == []  # no failures: the proposal sees none
    assert pe2.format_examples([]) == pe2.NO_EXAMPLES


@pytest.mark.parametrize("backtrack", [True, False])
def test_pe2_beam_is_the_best_by_dev_over_all_rounds(backtrack):
    # dev accuracies on the 6 dev questions: seed 0.5; round 1: C 0.83, A 0.0; round 2: D 0.5, E 0.83, F 0.5, B 0.17
    children = cycle(["Child C.", "Child A.", "Child D.", "Child E.", "Child F.", "Child B."])

    def optimizer(rendered, params, i):
        return f"<PROMPT>{children()}</PROMPT>" if STAGE2 in rendered else "analysis"

    result, ctx, _ = run("pe2", optimizer=optimizer, quality=lambda t: 0.0 if t == "Child A." else 0.5,
                         dev_size=None, backtrack=backtrack)
    expands = [s for s in ctx.steps if s["phase"] == "expand"]
    assert len(expands) == 2
    by_id = {n["id"]: n for n in ctx.steps[-1]["state"]["nodes"]}
    names = {n["prompt"]: n["id"] for n in by_id.values()}
    expected_beam = [names["Child C."], names[SEED_PROMPT] if backtrack else names["Child A."]]
    assert expands[1]["beam"] == expected_beam  # with backtracking the older seed beats the newer A
    for i, step in enumerate(ctx.steps):  # every beam: the best 2 by dev among the prompts scored before it
        if step["phase"] == "expand":
            before = [n for n in ctx.steps[i - 1]["state"]["nodes"] if n["dev"] is not None
                      and (backtrack or n["round"] == max(m["round"] for m in ctx.steps[i - 1]["state"]["nodes"]))]
            assert step["beam"] == [n["id"] for n in sorted(before, key=lambda n: -n["dev"])][:2]
    if backtrack:
        order = ["Child C.", "Child E.", SEED_PROMPT, "Child D.", "Child F.", "Child B.", "Child A."]
        assert [c.text for c in result.candidates] == order  # by dev; ties: the older prompt first
    best = max(n["dev"] for n in by_id.values())
    assert result.best.text == "Child C." and result.best.score == best == result.meta["dev_accuracy"]


def test_pe2_returns_the_seed_when_nothing_beats_it_and_stops_at_dev_1():
    result, ctx, _ = run("pe2", optimizer=lambda r, p, i: "<PROMPT>Guess.</PROMPT>" if STAGE2 in r else "analysis",
                         quality=lambda t: 0.0 if t == "Guess." else 0.5)
    assert result.best.text == SEED_PROMPT
    assert result.meta["rounds"] == 2
    result, ctx, _ = run("pe2", optimizer=lambda r, p, i: "<PROMPT>Perfect.</PROMPT>" if STAGE2 in r else "analysis",
                         quality=lambda t: 1.0 if t == "Perfect." else 0.5)
    assert result.best.text == "Perfect." and result.best.score == 1.0
    assert result.meta["stopped"] == "dev accuracy 1.0" and result.meta["rounds"] == 1  # no second round


@pytest.mark.parametrize(
    "reply, expected, status",
    [
        ("<PROMPT>Check the last digit.</PROMPT>", "Check the last digit.", "tagged"),
        ("Here is the improved prompt:\n\nCheck the last digit.", "Check the last digit.", "untagged"),
        ("```\nCheck the last digit.\n```", "Check the last digit.", "untagged"),
        ('"Check the last digit."', "Check the last digit.", "untagged"),
        ("Check the last digit.\n\nThis works because the model ignored it.", None, "failed"),
        ("", None, "failed"),
        ("word " * 200, None, "failed"),  # one paragraph, far too long for a prompt
    ],
)
def test_pe2_parses_tagged_or_one_short_paragraph(reply, expected, status):
    got = pe2.parse_proposal(reply, max_chars=300)
    assert (got.text, got.status) == (expected, status)
    long = pe2.parse_proposal("<PROMPT>" + "Check the sign of each number. " * 30 + "</PROMPT>", max_chars=100)
    assert long.capped and long.text.endswith(".") and len(long.text) <= 100


def test_pe2_drops_and_counts_unusable_proposals():
    proposals = cycle(["",  # unparseable
                       f"<PROMPT>{SEED_PROMPT}</PROMPT>",  # unchanged
                       "<PROMPT>Q: <input>\nA: Let's think.</PROMPT>",  # the template's scaffolding
                       f"<PROMPT>Answer this: {SPLITS.train[1].input}</PROMPT>"])  # a copied training question

    result, ctx, _ = run("pe2", optimizer=lambda r, p, i: f"{proposals()}" if STAGE2 in r else "")
    parses = result.meta["parses"]
    assert ctx.cost.unparseable == 1
    assert parses["rejected: unchanged"] == parses["rejected: template scaffolding"] == 1
    assert parses["rejected: copies a task input"] == 1
    assert parses["analysis-empty"] == 4  # an empty stage 1 is kept (not repaired) and stage 2 still asked
    assert result.best.text == SEED_PROMPT and result.meta["prompts"] == 1
