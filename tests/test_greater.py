"""GReaTer's loop on the tiny random model: step records and allowed choices, determinism, resume after a crash,
the budget stop, tensors on the model's device, the small-model variants, and the config and presets.
(Layout and passes: test_greater_passes.py; bf16 and re-scoring: test_greater_rescoring.py; the pinned step
log: test_greater_golden.py.) Fast: seconds in total."""

# ruff: noqa: F811  (the fixtures imported from greaterkit are used as parameter names)
from __future__ import annotations

import dataclasses

import pytest
import torch
from greaterkit import EXAMPLES, SMOKE, TASK, gen, one_thread, rows_for, run  # noqa: F401

from harness.core.context import OptimizeContext
from harness.core.types import BenchError, Budget, PromptPosition
from harness.evaluation.evaluate import evaluate
from harness.greater.config import PRESETS, config_for
from harness.greater.gradients import (
    allowed_token_mask,
)
from harness.greater.optimizer import Greater, make
from harness.greater.rescoring import score_rows

# ------------------------------------------------------------------------------ the loop


@pytest.fixture(scope="module")
def reference(gen):
    return run(gen)


def test_steps_records_and_allowed_choices(gen, reference):
    res, ctx = reference
    steps = [s for s in ctx.steps if s.get("kind") == "step"]
    assert len(steps) == 3 and res.meta["steps_done"] == 3
    allowed = allowed_token_mask(gen.tokenizer)
    assert [s["position"] for s in steps] == [0, 1, 2]  # left to right over " think step by step."
    for s in steps:
        assert len(s["candidates"]) >= 1 and 1 <= len(s["rescored"]) <= 3
        chosen = s["chosen"]["id"]
        before = gen.tokenizer(s["prompt_before"], add_special_tokens=False)["input_ids"]
        assert bool(allowed[chosen]) or chosen in before  # a new token is always an allowed one
        assert chosen in [c["id"] for c in s["rescored"]]
        best = min(s["rescored"], key=lambda c: c["key"])
        assert s["early_accept"] or chosen == best["id"]
        assert set(s["seconds"]) == {"gradient", "candidates", "generation", "rescoring"}
        assert s["tokens"]["gradient"] > 0 and "reasoning_tokens" in s
    assert res.meta["variants"]["mistake"] == "greedy" and res.meta["variants"]["loss"] == "full"
    assert res.meta["dev_accuracy"] is not None and 0 <= res.meta["dev_accuracy"] <= 1
    assert res.best.text == max(res.candidates, key=lambda c: c.score).text
    assert res.best.text.startswith("Use ")
    assert len(res.meta["reasoning_tokens_per_step"]) == 3
    assert ctx.cost.backward_passes == 3 * 4  # one backward per training sequence per step, never more


def test_same_seed_same_prompt(gen, reference):
    res, ctx = reference
    again, ctx2 = run(gen)
    assert again.best.text == res.best.text
    strip = lambda s: {k: v for k, v in s.items() if k not in ("seconds", "cost")}
    assert [strip(s) for s in ctx2.steps] == [strip(s) for s in ctx.steps]


def test_resume_after_crash_gives_the_same_prompt(gen, reference, tmp_path):
    res, _ = reference

    class Crash(Exception):
        pass

    def crash(msg):
        if msg.startswith("greater step 2/"):
            raise Crash(msg)

    with pytest.raises(Crash):
        run(gen, tmp_path, progress=crash)
    calls = []
    resumed, ctx = run(gen, tmp_path, progress=calls.append)
    assert any("resumed after step 2" in m for m in calls)
    steps = [s for s in ctx.steps if s.get("kind") == "step"]
    assert [s["index"] for s in steps] == [0, 1, 2]  # steps 0-1 read back, step 2 run once
    assert resumed.best.text == res.best.text
    assert resumed.meta["prompt_per_step"] == res.meta["prompt_per_step"]


def test_budget_stop(gen, reference):
    res, ctx = reference
    stopped, ctx0 = run(gen, budget=Budget(task_tokens=0))  # spent before the start: nothing more is spent
    assert stopped.meta["stopped"] == "budget" and stopped.meta["steps_done"] == 0
    assert stopped.best.text == "Use think step by step." and stopped.meta["dev_accuracy"] is None
    assert ctx0.cost.task_calls == 0 and ctx0.cost.backward_passes == 0 and ctx0.steps == []
    # a budget that the first step exhausts: exactly one step
    after_one = ctx.steps[0]["cost"]
    limit = after_one["task_tokens_in"] + after_one["task_tokens_out"]
    one, ctx1 = run(gen, budget=Budget(task_tokens=limit))
    assert one.meta["steps_done"] == 1 and one.meta["stopped"] == "budget"
    assert one.meta["prompt_per_step"] == res.meta["prompt_per_step"][:1]
    # out of budget: no dev selection (no step is logged after the budget ran out); the best training score wins
    assert [s["kind"] for s in ctx1.steps] == ["step"] and one.meta["dev_accuracy"] is None
    assert one.best.text == ctx1.steps[0]["state"]["top"][0]["text"]


def test_every_tensor_of_a_step_is_made_on_the_models_device(gen, reference):
    """With torch's default device set to `meta`, a tensor made without the model's device (`device=` or
    `.to(...)`) lands on meta and the step fails (meta tensors hold no data, and mix with no real device);
    so equal steps prove every tensor of prepare, the gradient pass, the proposal, the re-generation and the
    KV-cache re-scoring was placed explicitly. (Dev selection is left out: the evaluator's stop strings use
    transformers' stop-string criterion, which builds its tensors on the default device.)"""
    _, ref_ctx = reference
    ctx = OptimizeContext.create(scorer=evaluate, task_model=gen, gradient_model=gen, seed=0, max_new_tokens=8, progress=lambda _m: None)
    opt = Greater(config_for("smoke", **SMOKE))
    with torch.device("meta"):
        steps = opt.prepare(TASK, EXAMPLES, ctx)
        state = steps.initial_state()
        for _ in range(SMOKE["steps"]):
            record, state = steps.step(state)
            ctx.log_step(record, state.to_json())
    strip = lambda s: {k: v for k, v in s.items() if k not in ("seconds", "cost")}
    assert [strip(s) for s in ctx.steps] == [strip(s) for s in ref_ctx.steps if s.get("kind") == "step"]
    # the allowed-answers loss and re-scoring without the prefix cache, which the smoke run does not take
    _, _, rows = rows_for(gen)
    groups, shared = [[r, r] for r in rows[:2]], [r.slot(1) for r in rows[:2]]
    for prefix_cache in (True, False):
        want = score_rows(gen.model, groups, shared, temperature=0.2, loss="options", prefix_cache=prefix_cache)
        with torch.device("meta"):
            got = score_rows(gen.model, groups, shared, temperature=0.2, loss="options", prefix_cache=prefix_cache)
        assert got == want


def test_small_model_variants_are_used_and_reported(gen):
    res, ctx = run(gen, steps=1, mistake="run", loss="options", tie_break="loss")
    assert res.meta["variants"]["mistake"] == "options"  # closed answers: the run's reading is options
    assert res.meta["variants"]["loss"] == "options"
    s = ctx.steps[0]
    for c in s["rescored"]:
        assert len(c["key"]) == 2 and c["key"][0] == c["mistake_rate"]


# ------------------------------------------------------------------------------ config


def test_presets_and_overrides():
    assert set(PRESETS) == {"paper", "cpu", "smoke"}
    paper = config_for("paper")
    assert (paper.n_train, paper.steps, paper.train_reasoning_tokens) == (50, 125, 1024)
    assert (paper.fixed_prefix, paper.answer_temperature, paper.fluency_weight, paper.select_fluency_weight) == ("Use", 0.2, 0.2, 0.02)
    assert (paper.rescore_top, paper.keep, paper.min_candidates, paper.k_growth) == (3, 10, 6, 2)
    assert config_for("cpu").mistake == "run"
    assert config_for("smoke", steps="5", dev_limit="none", early_accept="false").steps == 5
    assert config_for("smoke", dev_limit="none").dev_limit is None
    assert make("smoke").name == "greater"
    with pytest.raises(BenchError, match="did you mean 'paper'"):
        config_for("papr")
    with pytest.raises(BenchError, match="mistake"):
        config_for("smoke", mistake="sometimes")
    with pytest.raises(BenchError, match="greater: unknown setting"):
        config_for("smoke", stepz=3)
    assert dataclasses.is_dataclass(paper) and paper.__dataclass_params__.frozen


def test_a_run_preset_without_method_sizes_builds_on_its_base():
    """cpu-0.5b: every method's cpu sizes, with the preset's GReaTer settings over them, then overrides."""
    from baselines.ape import make as make_ape
    from harness.core.spec import PRESETS as RUN_PRESETS

    run_preset = RUN_PRESETS.get("cpu-0.5b")
    assert run_preset.base == "cpu" and run_preset.max_new_tokens == 256 and run_preset.position == PromptPosition.AFTER
    small = config_for("cpu-0.5b")
    assert small == dataclasses.replace(config_for("cpu"), **run_preset.methods["greater"])
    assert small.rescore_with == "task_model" and small.n_train == 8
    assert config_for("cpu-0.5b", steps="3", n_train=5).steps == 3 and config_for("cpu-0.5b", n_train=5).n_train == 5
    assert make_ape("cpu-0.5b").config == make_ape("cpu").config  # no ape settings in the preset
    with pytest.raises(BenchError, match="unknown preset 'cpu-1b'"):
        config_for("cpu-1b")


def test_registered_and_needs_consistent_render(gen):
    from harness.backends.fake import ScriptedGenerator
    from harness.core.methods import make_optimizer

    assert isinstance(make_optimizer("greater", preset="smoke"), Greater)
    ctx = OptimizeContext.create(scorer=evaluate, task_model=ScriptedGenerator(lambda *a: "yes"), gradient_model=gen)
    with pytest.raises(BenchError, match="render prompts differently"):
        Greater(config_for("smoke")).optimize(TASK, EXAMPLES, EXAMPLES, ctx)
