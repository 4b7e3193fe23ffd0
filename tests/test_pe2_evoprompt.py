"""PE2 and EvoPrompt (GA, DE) with scripted models: registration, configs and presets, the copy guard's common
wording, and what every one of them must do: determinism, the budget, resume after a crash, budget scaling.
(Each method's own behaviour: test_pe2.py, test_evoprompt.py.)"""

from __future__ import annotations

import random

import pytest
from fakeworld import scripted_models
from killed import Crash, CrashingAfter
from pe2evokit import FACTORIES, SEED_PROMPT, lively, run

from baselines import evoprompt, pe2
from baselines.parsing import CopyGuard
from harness.core.methods import describe_methods, make_optimizer
from harness.core.types import BenchError, Budget

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
