"""Behaviour of PE2 and EvoPrompt (GA, DE) with scripted models: what reaches the optimizer LLM, how prompts are
selected and survive, the guards against unusable proposals, budget, determinism and resume after a crash."""

from __future__ import annotations

import random
import re
import zlib

import pytest
from fakeworld import make_ctx, messy_optimizer, parity_task, scripted_models

from baselines import evoprompt, pe2
from baselines.parsing import CopyGuard
from harness.core.methods import describe_methods, make_optimizer
from harness.core.types import ZERO_SHOT_COT, BenchError, Budget, PromptPosition

TASK = parity_task()
SPLITS = TASK.load()
SEED_PROMPT = ZERO_SHOT_COT
FACTORIES = {"pe2": pe2.make, "evoprompt-ga": evoprompt.make_ga, "evoprompt-de": evoprompt.make_de}
STAGE2 = "Your answer to stage 1 was"  # only PE2's stage-2 request holds this
VARIATION = "Write a variation"  # APE's paraphrase request (EvoPrompt's initial population)


def run(method, preset="smoke", optimizer=messy_optimizer, quality=None, seed=0, steps_path=None, task_model=None,
        budget=None, **over):
    tm, om = scripted_models(optimizer, **({"quality": quality} if quality else {}))
    ctx = make_ctx(task_model or tm, om, seed=seed, steps_path=steps_path, budget=budget)
    result = FACTORIES[method](preset, **over).optimize(TASK, SPLITS.train, SPLITS.dev, ctx)
    return result, ctx, om


def user_texts(gen) -> list[str]:
    return [p.removeprefix("USER: ").split("\nASSISTANT: ")[0] for prompts, _ in gen.calls for p in prompts]


def lively(rendered, params, index):
    """Varied usable proposals for every method (tagged for PE2, EvoPrompt and APE's paraphrase), some empty."""
    key = zlib.crc32(f"{rendered}|{params.seed}|{index}".encode()) % 1000
    if key % 3 == 0:
        return ""
    text = f"Think about the {['step', 'check', 'careful', 'digit'][key % 4]}s and answer, version {key}."
    return f"Analysis {key}." if "Stage 1:" in rendered and STAGE2 not in rendered else f"<prompt>{text}</prompt> <INS>{text}</INS>"


def cycle(replies):
    """A reply function that hands out `replies` in order (then repeats the last one)."""
    it = iter(replies)
    last = [replies[-1]]

    def next_reply():
        last[0] = next(it, last[0])
        return last[0]

    return next_reply


# ------------------------------------------------------------------------------------------ registry and configs


def test_registered_with_one_line_descriptions_and_presets():
    lines = dict(describe_methods())
    assert lines["pe2"].startswith("PE2 (Ye et al. 2024)")
    assert lines["evoprompt-ga"].startswith("EvoPrompt-GA") and lines["evoprompt-de"].startswith("EvoPrompt-DE")
    assert make_optimizer("pe2", preset="smoke").config == pe2.PRESETS["smoke"]
    assert make_optimizer("evoprompt-de", preset="cpu").config == evoprompt.DE_PRESETS["cpu"]
    for presets in (pe2.PRESETS, evoprompt.GA_PRESETS, evoprompt.DE_PRESETS):
        assert set(presets) == {"paper", "cpu", "smoke"}
        assert presets["paper"] == type(presets["paper"])()  # paper = the published defaults
    assert (pe2.PRESETS["paper"].beam, pe2.PRESETS["paper"].expand, pe2.PRESETS["paper"].rounds) == (4, 4, 3)
    assert (evoprompt.GA_PRESETS["paper"].popsize, evoprompt.GA_PRESETS["paper"].generations) == (10, 10)
    assert pe2.make("smoke", rounds="3").config.rounds == 3  # command-line strings read as the field's type
    for bad in (lambda: pe2.make("smoke", batching="easy"), lambda: pe2.make("smoke", beam=0),
                lambda: evoprompt.make_de("smoke", popsize=3), lambda: evoprompt.make_ga("smoke", selection="best"),
                lambda: evoprompt.make_ga("smoke", init="random"), lambda: evoprompt.make_ga("fast")):
        with pytest.raises(BenchError):
            bad()


def test_copy_guard_ignores_wording_many_sources_share():
    guard = CopyGuard(["Is 12 an even number? Options: - Yes - No", "Is 15 an even number? Options: - Yes - No"], max_sources=1)
    assert guard("Note: is 12 an even number? options yes no")
    assert not guard("Decide if it is an even number; options are yes or no.")
    stems = CopyGuard([f"Is the following sentence plausible to a sports fan today {i}" for i in range(3)], max_sources=1)
    assert not stems("Is the following sentence plausible to a sports fan today?")  # shared by every input


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


# ------------------------------------------------------------------------------------------ EvoPrompt


def operator_reply(children):
    """Paraphrases, then the operators' children from `children`, each in its tags."""
    paraphrases = cycle(["Para one.", "Para two.", "Para three."])

    def reply(rendered, params, i):
        if VARIATION in rendered:
            return f"<INS>{paraphrases()}</INS>"
        return f"Working...\n<prompt>{children(rendered)}</prompt>"

    return reply


def test_roulette_is_proportional_and_uniform_when_all_fitness_is_zero():
    picks, uniform = evoprompt.roulette(["a", "b", "c"], [0.0, 0.5, 0.0], 20, random.Random(0))
    assert picks == ["b"] * 20 and not uniform
    picks, uniform = evoprompt.roulette(["a", "b", "c"], [0.0, 0.0, 0.0], 300, random.Random(0))
    assert uniform and set(picks) == {"a", "b", "c"}


def test_ga_parents_come_from_the_wheel_and_the_best_popsize_survive():
    counter = iter(range(1000))
    quality = {SEED_PROMPT: 1.0, "Para one.": 0.0, "Para two.": 0.0, "Para three.": 0.0}
    result, ctx, om = run("evoprompt-ga", optimizer=operator_reply(lambda r: f"Child {next(counter)} step."),
                          quality=lambda t: quality.get(t, 0.5))
    init, *gens = ctx.steps
    assert init["phase"] == "init" and init["state"]["population"] == [SEED_PROMPT, "Para one.", "Para two.", "Para three."]
    ga = [t for t in user_texts(om) if VARIATION not in t]
    assert len(ga) == 2 * 4 and all(t.endswith("\n\n1. ") for t in ga)  # 2 generations x popsize children
    first = ga[:4]  # only the seed has fitness > 0: the wheel draws it for both parents every time
    assert all(t.split("Follow the same steps")[1].count(f"Prompt 1: {SEED_PROMPT}\nPrompt 2: {SEED_PROMPT}") for t in first)
    for prev, step in zip(ctx.steps, gens):
        scored = {t: (s, k) for k, (t, s) in enumerate(step["state"]["scored"])}
        pool = list(dict.fromkeys(prev["state"]["population"] + [c for c, _ in step["children"]]))
        expected = sorted(pool, key=lambda t: (-scored[t][0], scored[t][1]))[:4]
        assert step["state"]["population"] == expected  # top-k of population + children, ties: earlier scored
        best_before = max(scored[t][0] for t in prev["state"]["population"])
        assert step["train_accuracy"] >= best_before  # elitist
    assert result.best.text == result.candidates[0].text and [c.text for c in result.candidates] == gens[-1]["population"]


@pytest.mark.parametrize("selection", ["wheel", "tour", "random"])
def test_ga_selects_even_when_every_fitness_is_zero(selection):
    result, ctx, _ = run("evoprompt-ga", optimizer=operator_reply(lambda r: "Child step."), quality=lambda t: 0.0,
                         selection=selection)
    assert result.meta["generations"] == 2 and all(c.score == 0.0 for c in result.candidates)
    assert result.meta["parses"].get("uniform wheel (all fitness 0)", 0) == (2 if selection == "wheel" else 0)


def slots_of(text: str) -> dict[str, str]:
    """The four prompts of a DE request (after its worked example)."""
    tail = text.split("Follow the same steps for the prompts below.")[1]
    return dict(re.findall(r"^(Prompt \d|Basic Prompt): (.*)$", tail, re.MULTILINE))


def test_de_asks_each_member_with_two_others_and_the_best_and_keeps_the_better():
    quality = {SEED_PROMPT: 1.0, "Para one.": 0.0, "Para two.": 0.0, "Para three.": 0.0,
               "Trial for seed.": 1.0, "Trial for one.": 1.0, "Trial for two.": 0.0}
    trials = {SEED_PROMPT: "Trial for seed.", "Para one.": "Trial for one.", "Para two.": "Trial for two."}

    def child(rendered):
        return trials.get(slots_of(rendered.split("\nASSISTANT:")[0])["Basic Prompt"], "")

    result, ctx, om = run("evoprompt-de", optimizer=operator_reply(child), quality=lambda t: quality.get(t, 0.0),
                          generations=1)
    de_calls = [(prompts, p) for prompts, p in om.calls if VARIATION not in prompts[0]]
    assert len(de_calls) == 4 and all(len(prompts) == 1 and p.temperature == 0.5 for prompts, p in de_calls)
    population = ctx.steps[0]["state"]["population"]
    texts = [t for t in user_texts(om) if VARIATION not in t]
    for j, text in enumerate(texts):
        assert "Find the parts where Prompt 1 and Prompt 2 differ" in text and "Cross over the prompt from step 3" in text
        slots = slots_of(text)
        assert slots["Basic Prompt"] == population[j]
        others = population[:j] + population[j + 1 :]
        assert slots["Prompt 1"] in others and slots["Prompt 2"] in others and slots["Prompt 1"] != slots["Prompt 2"]
        assert slots["Prompt 3"] == SEED_PROMPT  # the best prompt so far (ties: the earliest scored)
    [gen] = ctx.steps[1:]
    kept = [s["kept"] for s in gen["slots"]]
    # seed: its trial only ties (kept); one: beaten (replaced); two: ties at 0 (kept); three: no tags (kept, unscored)
    assert kept == [SEED_PROMPT, "Trial for one.", "Para two.", "Para three."] == gen["state"]["population"]
    assert "trial_score" not in gen["slots"][3] and ctx.cost.unparseable == 1


def test_de_best_donor_is_updated_within_a_generation():
    result, ctx, om = run("evoprompt-de", optimizer=operator_reply(lambda r: "Much better."),
                          quality=lambda t: 1.0 if t == "Much better." else 0.0, generations=1)
    texts = [t for t in user_texts(om) if VARIATION not in t]
    assert [slots_of(t)["Prompt 3"] for t in texts] == [SEED_PROMPT] + ["Much better."] * 3
    assert result.best.text == "Much better." and result.meta["parses"]["cache hit"] == 3  # repeats cost nothing


@pytest.mark.parametrize("method", ["evoprompt-ga", "evoprompt-de"])
def test_evoprompt_drops_copies_of_the_worked_example_and_untagged_replies(method):
    copied = "Study each review closely and assign it one sentiment label out of terrible, bad, okay, good and great."
    replies = cycle([f"<prompt>{copied}</prompt>", "Step 1 done, step 2 done, no final prompt."])
    result, ctx, _ = run(method, optimizer=lambda r, p, i: "<INS>Para one.</INS>" if VARIATION in r else replies())
    parses = result.meta["parses"]
    assert parses["rejected: copies the worked example"] == 1
    assert ctx.cost.unparseable == parses["failed"] >= 1
    assert copied not in [c.text for c in result.candidates]
    assert evoprompt.parse_operator_reply("1. x\n2. <prompt>Final one.\nmore", 600).text == "Final one."
    assert evoprompt.parse_operator_reply("<prompt>a b</prompt> then <prompt>Last one.</prompt>", 600).text == "Last one."
    assert evoprompt.parse_operator_reply("Just a prompt.", 600).status == "failed"


def test_evoprompt_pool_init_keeps_the_best_half_and_paraphrases_each():
    result, ctx, om = run("evoprompt-ga", optimizer=operator_reply(lambda r: "Child step."), init="pool", popsize=4,
                          generations=1, quality=lambda t: 0.9 if "step" in t else 0.2)
    init = ctx.steps[0]
    assert len(init["state"]["scored"]) >= len(evoprompt.TRIGGER_POOL)  # every pool prompt is scored and paid
    scores = {t: s for t, s in init["state"]["scored"]}
    assert init["kept"] == sorted(evoprompt.TRIGGER_POOL, key=lambda t: -scores[t])[:2]
    variations = [t for t in user_texts(om) if VARIATION in t]
    assert len(variations) == 2 and init["state"]["population"][:2] == init["kept"]


# ------------------------------------------------------------------------------------------ all three


@pytest.mark.parametrize("method", list(FACTORIES))
def test_deterministic_under_a_seed_and_blind_to_global_random_state(method):
    random.seed(1)
    before = random.getstate()
    ref, ref_ctx, _ = run(method, optimizer=lively, seed=7)
    assert random.getstate() == before  # no global random state used
    random.seed(12345)
    again, ctx, _ = run(method, optimizer=lively, seed=7)
    assert again.best == ref.best and again.candidates == ref.candidates
    assert {k: v for k, v in again.cost.to_dict().items() if k != "wall_seconds"} == \
        {k: v for k, v in ref.cost.to_dict().items() if k != "wall_seconds"}
    assert [s["state"] for s in ctx.steps] == [s["state"] for s in ref_ctx.steps]
    assert ref.cost is ref_ctx.cost and ref.cost.optimizer_calls > 0 and ref.cost.task_calls > 0
    assert ref_ctx.cost.unparseable > 0  # lively's empty replies are counted, not fatal
    assert len(ref.candidates) > 1


@pytest.mark.parametrize("method", list(FACTORIES))
def test_budget_stops_the_run_and_a_spent_budget_asks_nothing(method):
    full, ctx, _ = run(method, optimizer=lively, seed=2)
    first = ctx.steps[0]["cost"]
    limit = first["task_tokens_in"] + first["task_tokens_out"]
    stopped, ctx2, _ = run(method, optimizer=lively, seed=2, budget=Budget(task_tokens=limit))
    assert len(ctx2.steps) == 1 and stopped.cost.task_tokens_in < full.cost.task_tokens_in
    assert isinstance(stopped.best.text, str) and stopped.best.score is not None
    empty, ctx3, om = run(method, optimizer=lively, seed=2, budget=Budget(task_tokens=0))
    assert empty.best.text == SEED_PROMPT and empty.cost.optimizer_calls == 0 and not om.calls and not ctx3.steps
    calls, ctx4, _ = run(method, optimizer=lively, seed=2, budget=Budget(optimizer_calls=1))
    assert calls.cost.optimizer_calls <= full.cost.optimizer_calls and isinstance(calls.best.text, str)


class Crash(RuntimeError):
    pass


class CrashingAfter:
    """Wraps a generator; raises instead of answering past its first `n` prompts (a killed run)."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    @property
    def identity(self):
        return self.inner.identity

    def render(self, prompt):
        return self.inner.render(prompt)

    def generate(self, prompts, params):
        if len(prompts) > self.n:
            raise Crash("killed")
        self.n -= len(prompts)
        return self.inner.generate(prompts, params)

    def loglikelihood(self, requests):
        return self.inner.loglikelihood(requests)


@pytest.mark.parametrize("method", list(FACTORIES))
def test_resumed_run_equals_uninterrupted_run(method, tmp_path):
    ref, ref_ctx, _ = run(method, optimizer=lively, seed=5, steps_path=tmp_path / "a.jsonl")
    assert len(ref_ctx.steps) >= 3
    tm, _ = scripted_models()
    halfway = (ref_ctx.steps[0]["cost"]["task_calls"] + ref.cost.task_calls) // 2  # after the first step
    with pytest.raises(Crash):
        run(method, optimizer=lively, seed=5, steps_path=tmp_path / "b.jsonl", task_model=CrashingAfter(tm, halfway))
    crashed_steps = (tmp_path / "b.jsonl").read_text().count("\n")
    assert 0 < crashed_steps < len(ref_ctx.steps)
    resumed, ctx, _ = run(method, optimizer=lively, seed=5, steps_path=tmp_path / "b.jsonl")
    assert resumed.best == ref.best and resumed.candidates == ref.candidates
    cost = {k: v for k, v in resumed.cost.to_dict().items() if k != "wall_seconds"}
    assert cost == {k: v for k, v in ref.cost.to_dict().items() if k != "wall_seconds"}
    assert [s["step"] for s in ctx.steps] == list(range(len(ref_ctx.steps)))


ROUNDS = {"pe2": "rounds", "evoprompt-ga": "generations", "evoprompt-de": "generations"}


@pytest.mark.parametrize("method", list(FACTORIES))
def test_under_a_budget_rounds_go_on_until_it_is_used(method):
    """pe2-evoprompt.md: scale by budget, not by steps. Without a budget the preset's rounds are the limit; with
    one, rounds continue until it is spent."""
    free, _, _ = run(method, optimizer=lively, seed=3)
    assert free.meta[ROUNDS[method]] == 2  # smoke: 2 rounds / generations
    spent = free.cost.task_tokens_in + free.cost.task_tokens_out
    budget = Budget(task_tokens=3 * spent)
    long, ctx, _ = run(method, optimizer=lively, seed=3, budget=budget)
    assert long.meta[ROUNDS[method]] > 2 and ctx.out_of_budget() and long.meta["stopped"] in (None, "budget")
    assert long.cost.task_tokens_in + long.cost.task_tokens_out >= budget.task_tokens
    assert len(long.candidates) >= len(free.candidates) and long.best.score >= free.best.score


@pytest.mark.parametrize("method", list(FACTORIES))
def test_under_a_budget_a_search_that_finds_nothing_new_stops(method):
    """An optimizer whose replies never parse adds no prompt: under a budget too big to reach, the search ends
    after the stall limit (3 rounds) instead of looping on free, remembered work."""
    result, ctx, om = run(method, optimizer=lambda rendered, params, i: "", seed=1, budget=Budget(task_tokens=10**9))
    assert result.meta[ROUNDS[method]] == 3 and result.meta["stopped"].startswith("no new prompt in 3")
    assert result.best.text == SEED_PROMPT and not ctx.out_of_budget() and ctx.cost.unparseable > 0
    calls = ctx.cost.optimizer_calls
    assert calls > 0 and len(om.calls) > 0
