"""EvoPrompt (GA, DE) with scripted models: the roulette wheel, GA parents and survivors, DE's members, donors and
replacement, the copy guard on the worked examples, and the pool initialisation."""

from __future__ import annotations

import random
import re

import pytest
from pe2evokit import SEED_PROMPT, VARIATION, cycle, run, user_texts

from baselines import evoprompt

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
