"""Behaviour of the text-space baselines (APE, OPRO, ProTeGi, TextGrad) with scripted models, and of their
shared helpers: tolerant parsing, deduplication, bandits, presets, resume after a crash."""

from __future__ import annotations

import re
import zlib
from collections import Counter

import pytest
from fakeworld import make_ctx, messy_optimizer, parity_task, scripted_models, task_reply
from killed import Crash, CrashingAfter

from baselines import ape, common, opro, protegi, textgrad
from baselines.common import Outcomes, ucb_pick
from baselines.parsing import clean_text, dedupe, parse_list, parse_tagged
from harness.backends.fake import ScriptedGenerator
from harness.core.types import BenchError, Example, PromptPosition

TASK = parity_task()
SPLITS = TASK.load()


def run(method, preset="smoke", optimizer=messy_optimizer, quality=None, seed=0, steps_path=None, task_model=None, **over):
    make = {"ape": ape.make, "opro": opro.make, "protegi": protegi.make, "textgrad": textgrad.make}[method]
    tm, om = scripted_models(optimizer, **({"quality": quality} if quality else {}))
    ctx = make_ctx(task_model or tm, om, seed=seed, steps_path=steps_path)
    result = make(preset, **over).optimize(TASK, SPLITS.train, SPLITS.dev, ctx)
    return result, ctx, om


def user_texts(gen: ScriptedGenerator) -> list[str]:
    return [p.removeprefix("USER: ").split("\nASSISTANT: ")[0] for prompts, _ in gen.calls for p in prompts]


# ------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "text, expected, status",
    [
        ("<INS>Think step by step.</INS>", "Think step by step.", "tagged"),
        ("Sure! <ins> Add the numbers. </ins> Hope this helps", "Add the numbers.", "tagged"),
        ("<INS>Count the objects one at a time.", "Count the objects one at a time.", "partial"),
        ("<INS>Count each one.\n\nThis works because counting...", "Count each one.", "partial"),
        ("Check each step twice.</INS> extra", "Check each step twice.", "partial"),
        ("Instruction: Solve it slowly.\n\nAnother paragraph.", "Solve it slowly.", "untagged"),
        ('"Read the question twice."', "Read the question twice.", "untagged"),
        ('The instruction sounds like this: "Add them up."', "Add them up.", "untagged"),
        ("Sure! Here is the new instruction: <INS>Think.</INS>", "Think.", "tagged"),
        ("", None, "failed"),
        ("   \n  ", None, "failed"),
        ("<INS></INS>", None, "failed"),
        ("<INS> 42 </INS>", None, "failed"),
    ],
)
def test_parse_tagged_tolerates_messy_output(text, expected, status):
    got = parse_tagged(text, "INS")
    assert (got.text, got.status) == (expected, status)


def test_parse_tagged_without_untagged_fallback_and_length_cap():
    assert parse_tagged("Just words", "INS", untagged=False).status == "failed"
    long = "<INS>" + "Check the sign of every number. " * 100 + "</INS>"
    got = parse_tagged(long, "INS", max_chars=100)
    assert got.capped and len(got.text) <= 100 and got.text.endswith(".")
    text, capped = clean_text("x" * 500, max_chars=50)
    assert capped and len(text) == 50


def test_parse_list_start_end_and_fallbacks():
    items, status = parse_list("<START>First reason<END> noise <START>Second reason<END>", "START", close="END", max_items=4)
    assert items == ["First reason", "Second reason"] and status == "tagged"
    assert parse_list("<START>a reason<END><START>b reason<END>", "START", close="END", max_items=1)[0] == ["a reason"]
    assert parse_list("<START>Unclosed reason here", "START", close="END", max_items=2) == (["Unclosed reason here"], "partial")
    assert parse_list("1. One thing\n2. Another thing", "START", close="END", max_items=5) == (["One thing", "Another thing"], "untagged")
    assert parse_list("", "START", close="END", max_items=2) == ([], "failed")


def test_dedupe_ignores_case_space_and_end_punctuation():
    assert dedupe(["Think step by step.", "think  step by step", "Go.", "go!"], seen=["GO"]) == ["Think step by step."]


def test_ask_counts_failures_and_never_retries():
    ctx = make_ctx(*scripted_models(lambda r, p, i: ["<INS>Good one.</INS>", "", "<INS></INS>", "fine words"][i]))
    tally = Counter()
    [got] = common.ask(ctx, ["meta"], common.Ask(temperature=1.0, max_tokens=20, n=4), lambda t: parse_tagged(t, "INS"), tally)
    assert got == ["Good one.", "fine words"]
    assert ctx.cost.unparseable == 2 and ctx.cost.optimizer_calls == 1
    assert tally == Counter({"tagged": 1, "failed": 2, "untagged": 1})
    assert len(ctx.optimizer_model.inner.calls) == 1  # one call, no retry


def test_configure_presets_overrides_and_errors():
    assert opro.make("cpu").config == opro.PRESETS["cpu"]
    assert opro.make("smoke", steps="3").config.steps == 3  # command-line strings are read as the field's type
    assert textgrad.make("smoke", dev_size="none").config.dev_size is None
    with pytest.raises(BenchError, match="did you mean|unknown preset"):
        ape.make("fast")
    with pytest.raises(BenchError, match="unknown setting"):
        protegi.make("smoke", beam=3)
    with pytest.raises(BenchError):
        protegi.make("smoke", selection="greedy")
    for module in (ape, opro, protegi, textgrad):
        assert set(module.PRESETS) == {"paper", "cpu", "smoke"}
        assert module.PRESETS["paper"] == type(module.PRESETS["paper"])()  # paper = the published defaults


def test_outcomes_are_scored_once_per_pair():
    ctx = make_ctx()
    out = Outcomes(TASK, ctx)
    out.correct("Think step by step.", SPLITS.train[:4])
    calls = ctx.cost.task_calls
    out.correct("Think step by step.", SPLITS.train[:6])  # only the 2 new examples are scored
    assert ctx.cost.task_calls == calls + 2 * 2  # reasoning + answer per example
    restored = Outcomes(TASK, ctx).from_state(out.to_state())
    assert restored.correct("Think step by step.", SPLITS.train[:6]) == out.correct("Think step by step.", SPLITS.train[:6])
    assert ctx.cost.task_calls == calls + 4


def test_ucb_plays_unplayed_arms_first_then_the_highest_bound():
    import random

    stats = {"a": (3, 4), "b": (0, 0), "c": (1, 4), "d": (0, 0)}
    picked = ucb_pick(stats, 3, 1.0, random.Random(0))
    assert set(picked[:2]) == {"b", "d"} and picked[2] == "a"


# ------------------------------------------------------------------------------------------ OPRO


def test_opro_meta_prompt_lists_history_ascending_as_integers_best_20():
    history = [(f"instruction {i}", (i * 37 % 100) / 100) for i in range(25)]
    exemplars = list(SPLITS.train[:3])
    meta = opro.build_meta_prompt(history, exemplars, PromptPosition.AFTER, opro.PRESETS["paper"])
    shown = re.findall(r"Instruction: (.+)\nScore: (\d+)", meta)
    assert len(shown) == 20
    scores = [int(s) for _, s in shown]
    assert scores == sorted(scores)  # ascending: worst first
    assert set(scores) == {round(s * 100) for _, s in sorted(history, key=lambda h: h[1])[-20:]}
    assert meta.count("Ground truth answer:") == 3
    assert f"{SPLITS.train[0].input} <INS>" in meta  # where the instruction goes (after the question)
    before = opro.build_meta_prompt(history, exemplars, PromptPosition.BEFORE, opro.PRESETS["paper"])
    assert f"Q: <INS>\n\n{SPLITS.train[0].input}" in before
    assistant = opro.build_meta_prompt(history, exemplars, PromptPosition.ASSISTANT, opro.PRESETS["paper"])
    assert "A: <INS>" in assistant


def test_opro_samples_8_at_temperature_1_drops_duplicates_and_returns_best_train_score():
    replies = ["<INS>Check each step.</INS>", "<INS>check each step</INS>", "<INS>Let's solve the problem.</INS>",
               "<INS>Answer quickly.</INS>"] * 2

    result, ctx, om = run("opro", "smoke", optimizer=lambda r, p, i: replies[i], samples_per_step=8, steps=2)
    params = [p for _, p in om.calls]
    assert all(p.n == 8 and p.temperature == 1.0 for p in params)
    scored = [h for h in ctx.steps[-1]["state"]["history"]]
    texts = [h[0] for h in scored]
    assert texts == ["Let's solve the problem.", "Check each step.", "Answer quickly."]  # no duplicate scored twice
    assert ctx.steps[1]["duplicates"] == 6 and ctx.steps[2]["duplicates"] == 8  # step 2 proposes only known ones
    # the second meta-prompt shows the history ascending
    second = user_texts(om)[1]
    order = [m for m in re.findall(r"Instruction: (.+)", second)]
    score_of = {h[0]: h[1] for h in scored}
    assert [score_of[t] for t in order] == sorted(score_of[t] for t in order)
    assert result.best.text == max(scored, key=lambda h: h[1])[0] and result.best.score == max(h[1] for h in scored)


# ------------------------------------------------------------------------------------------ APE


def test_ape_proposes_from_disjoint_demo_sets_and_returns_the_best_scoring_proposal():
    quality = {"Say whether the number is even.": 1.0}

    def proposer(rendered, params, i):
        return ["<INS>Guess.</INS>", "<INS>Say whether the number is even.</INS>", "<INS>Answer at random.</INS>"][i % 3]

    result, _, om = run("ape", "smoke", optimizer=proposer, quality=lambda t: quality.get(t, 0.0))
    [(prompts, params)] = om.calls
    assert params.temperature == 0.9 and params.n == 3 and len(prompts) == 2
    demo_inputs = [set(re.findall(r"Input: (.+)", p)) for p in prompts]
    assert all(len(s) == 2 for s in demo_inputs) and not demo_inputs[0] & demo_inputs[1]
    assert result.best.text == "Say whether the number is even." and result.best.score == 1.0
    assert result.candidates[0].text == result.best.text and len(result.candidates) == 3


def test_ape_bandit_and_resampling_options():
    quality = {"Say whether the number is even.": 1.0, "Tell if the number is even.": 1.0}

    def proposer(rendered, params, i):
        if "variation" in rendered:
            return "<INS>Tell if the number is even.</INS>"
        return ["<INS>Guess.</INS>", "<INS>Say whether the number is even.</INS>", "<INS>Answer at random.</INS>"][i % 3]

    result, _, om = run("ape", "smoke", optimizer=proposer, quality=lambda t: quality.get(t, 0.0),
                        bandit=True, bandit_rounds=3, bandit_samples=2, resample_top=1, resample_samples=2)
    assert result.best.score == 1.0 and result.best.text in quality
    assert any("variation" in t for t in user_texts(om))
    assert "Tell if the number is even." in [c.text for c in result.candidates]


# ------------------------------------------------------------------------------------------ ProTeGi


def unique_editor(rendered, params, i):
    """Distinct reasons, edits and paraphrases, so the successor cap has something to cut."""
    key = zlib.crc32(f"{rendered}|{params.seed}|{i}".encode()) % 10_000
    if "reason(s)" in rendered:
        return f"<START>Reason {key}: it does not say to check.<END>"
    if "improved instruction" in rendered:
        return f"<START>Check the last digit, variant {key}.<END>"
    return f"<START>Look at the final digit, version {key}.<END>"


def test_protegi_keeps_parents_and_caps_successors():
    result, ctx, om = run("protegi", "smoke", optimizer=unique_editor, max_successors=3, beam_size=2, rounds=2,
                          quality=lambda t: 0.6 if t == "Let's think step by step." else 0.05)
    expands = [s for s in ctx.steps if s["phase"] == "expand"]
    assert len(expands) == 2
    capped = 0
    for s in expands:
        for parent, kept in s["successors"].items():
            assert len(kept) == min(3, s["generated"][parent])
            capped += s["generated"][parent] > 3  # the cap was needed: a random sample was kept
        parents = list(s["successors"])
        assert s["state"]["candidates"][: len(parents)] == parents  # the parents stay in the pool
    assert capped
    # the parent scores best, so it survives both selections
    assert result.best.text == "Let's think step by step."
    params = {(p.temperature, p.n) for _, p in om.calls}
    assert params == {(0.7, 1)}  # gradients, edits and paraphrases at 0.7 (smoke: 1 paraphrase each)


def test_protegi_gradient_requests_show_errors():
    _, _, om = run("protegi", "smoke", optimizer=unique_editor, quality=lambda t: 0.0)
    gradients = [t for t in user_texts(om) if "reason(s)" in t]
    assert gradients and all("Result (greedy exact match): wrong" in g and "Correct answer:" in g for g in gradients)


def test_successive_rejects_ranks_by_rejection_under_budget():
    import random

    quality = {"best": 1.0, "good": 0.7, "poor": 0.2, "bad": 0.0}
    tm, _ = scripted_models(quality=lambda t: quality[t])
    ctx = make_ctx(tm, ScriptedGenerator(messy_optimizer))
    out = Outcomes(TASK, ctx)
    ranked, stats = protegi.successive_rejects(["bad", "good", "best", "poor"], SPLITS.train, out, random.Random(0), budget=40)
    assert ranked[0] == "best" and ranked[-1] == "bad"
    assert stats["best"][1] >= stats["bad"][1]  # survivors were scored on more examples
    result, _, _ = run("protegi", "smoke", optimizer=unique_editor, selection="successive_rejects")
    assert result.meta["selection"] == "successive_rejects" and result.best.text


# ------------------------------------------------------------------------------------------ TextGrad


def test_textgrad_reverts_when_dev_accuracy_drops():
    def optimizer(rendered, params, i):
        if "Rewrite the instruction" in rendered:
            return "<IMPROVED_VARIABLE>Answer quickly.</IMPROVED_VARIABLE>"
        return "The instruction should ask to look at the last digit."

    result, ctx, _ = run("textgrad", "smoke", optimizer=optimizer,
                         quality=lambda t: 1.0 if t == "Let's think step by step." else 0.0)
    assert result.best.text == "Let's think step by step."
    updates = [s.get("update") for s in ctx.steps if s["phase"] == "step"]
    assert updates and set(updates) == {"reverted"}
    assert result.meta["reverted"] == 4 and result.meta["accepted"] == 0  # 2 epochs x 2 steps


def test_textgrad_keeps_a_rewrite_that_does_not_lower_dev_accuracy_and_critiques_first():
    def optimizer(rendered, params, i):
        if "Rewrite the instruction" in rendered:
            return "<IMPROVED_VARIABLE>Check the last digit step by step.</IMPROVED_VARIABLE>"
        return "Feedback: ask the model to check the last digit."

    result, ctx, om = run("textgrad", "smoke", optimizer=optimizer)
    assert result.best.text == "Check the last digit step by step."
    assert result.meta["accepted"] >= 1
    texts = user_texts(om)
    critiques = [t for t in texts if "do not write a new instruction" in t]
    assert critiques and all("Exact-match check: the final answer is" in t for t in critiques)
    first_step = ctx.steps[1]
    assert len(first_step["feedback"]) == 2  # one critique per minibatch example (smoke: batch of 2)
    assert all(p.temperature == 0 for _, p in om.calls)


def test_textgrad_counts_unparseable_rewrites():
    result, ctx, _ = run("textgrad", "smoke", optimizer=lambda r, p, i: "" if "Rewrite" in r else "Some feedback here.")
    assert ctx.cost.unparseable == 4 and result.meta["accepted"] == 0
    assert result.best.text == "Let's think step by step."


# ------------------------------------------------------------------------------------------ all four


@pytest.mark.parametrize("method", ["ape", "opro", "protegi", "textgrad"])
def test_parse_failures_are_counted_not_fatal(method):
    result, ctx, om = run(method, "smoke", optimizer=lambda r, p, i: ["", "<INS></INS>", "<START><END>", "  "][i % 4])
    samples = sum(len(prompts) * p.n for prompts, p in om.calls)
    assert samples > 0 and ctx.cost.unparseable == samples
    assert isinstance(result.best.text, str)


@pytest.mark.parametrize("method", ["ape", "opro", "protegi", "textgrad"])
def test_resumed_run_equals_uninterrupted_run(method, tmp_path):
    over = {"ape": {"bandit": True}, "opro": {}, "protegi": {}, "textgrad": {}}[method]
    ref, ref_ctx, _ = run(method, seed=5, steps_path=tmp_path / "a.jsonl", **over)
    assert len(ref_ctx.steps) >= 2
    tm, _ = scripted_models()
    n_generate = len(ref_ctx.task_model.inner.calls)
    with pytest.raises(Crash):
        run(method, seed=5, steps_path=tmp_path / "b.jsonl", task_model=CrashingAfter(tm, n_generate // 2, per_call=True), **over)
    crashed_steps = (tmp_path / "b.jsonl").read_text().count("\n")
    assert 0 < crashed_steps < len(ref_ctx.steps)
    resumed, ctx, _ = run(method, seed=5, steps_path=tmp_path / "b.jsonl", **over)
    assert resumed.best == ref.best
    assert resumed.candidates == ref.candidates
    cost = {k: v for k, v in resumed.cost.to_dict().items() if k != "wall_seconds"}
    assert cost == {k: v for k, v in ref.cost.to_dict().items() if k != "wall_seconds"}
    assert [s["step"] for s in ctx.steps] == list(range(len(ref_ctx.steps)))


def test_no_instruction_is_scored_as_none():
    seen = []

    def reply(rendered, params, i):
        seen.append(rendered)
        return task_reply()(rendered, params, i)

    ctx = make_ctx(ScriptedGenerator(reply), ScriptedGenerator(messy_optimizer))
    Outcomes(TASK, ctx).correct("", SPLITS.train[:1])
    assert seen[0].endswith("- No\nASSISTANT: ")  # the question alone, no trailing space


def test_meta_prompts_are_sent_as_one_user_turn():
    _, _, om = run("opro")
    for prompts, _ in om.calls:
        assert all(p.startswith("USER: ") and p.endswith("\nASSISTANT: ") for p in prompts)


def test_examples_helpers():
    import random

    sets = common.disjoint_sets(random.Random(1), SPLITS.train, 3, 4)
    ids = [ex.id for s in sets for ex in s]
    assert len(sets) == 3 and len(ids) == len(set(ids)) == 12
    assert len(common.disjoint_sets(random.Random(1), SPLITS.train[:5], 3, 2)) == 2  # runs out: fewer sets
    rec = {"input": "Q?", "gold": "Yes", "prediction": None, "correct": False, "reasoning": "x " * 500}
    text = common.format_outcome(rec, "greedy", reasoning_chars=50)
    assert "(none found)" in text and "wrong" in text and len(text) < 200
    assert common.format_demos([Example(id="1", input="a", target="b")]) == "Input: a\nOutput: b"
