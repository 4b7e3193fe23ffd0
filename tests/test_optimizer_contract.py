"""The contract every registered optimizer keeps, run with its `smoke` preset on a synthetic task.

Text-space methods get scripted task and optimizer models; gradient methods (GReaTer) get the tiny random
HF model as task and gradient model. Every method: returns a candidate, reports its cost, respects the
budget, gives the same result for the same seed, and leaves the global random state alone.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from fakeworld import make_ctx, messy_optimizer, parity_task, scripted_models

from baselines.fixed import FixedPrompt
from harness.backends.fake import ScriptedGenerator
from harness.core.context import Optimizer
from harness.core.methods import load_methods, make_optimizer
from harness.core.types import Budget, Cost, Needs, OptimizeResult, PromptCandidate

METHODS = load_methods()
TASK = parity_task()
SPLITS = TASK.load()


@pytest.fixture(scope="module")
def tiny():
    from tiny import tiny_generator

    return tiny_generator()


def test_every_method_module_in_the_tree_is_registered():
    """No silent skip: each method module in baselines/ (and GReaTer) must be named by an entry point. Not method
    modules: the shared helpers (common, parsing) and a method's meta-prompts (`<method>_prompts`)."""
    import pathlib

    from harness.core.methods import method_entry_points

    modules = {ep.value.split(":")[0] for ep in map(method_entry_points().get, METHODS)}
    tree = {f"baselines.{p.stem}" for p in pathlib.Path(__file__).parent.parent.joinpath("baselines").glob("*.py")
            if p.stem not in ("__init__", "common", "parsing") and not p.stem.endswith("_prompts")}
    assert tree <= modules, f"method modules without an entry point: {sorted(tree - modules)}"
    assert {"zs-cot", "greater", "ape", "opro", "protegi", "textgrad"} <= set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_needs_are_declared_in_the_type(method):
    opt = make_optimizer(method, preset="smoke")
    assert isinstance(opt.needs, Needs) and type(opt).needs is opt.needs  # a class attribute, not looked up
    assert isinstance(opt, Optimizer)


def run(method, request, *, seed=0, budget=None):
    opt = make_optimizer(method, preset="smoke")
    if opt.needs.gradients:
        gen = request.getfixturevalue("tiny")
        ctx = make_ctx(gen, ScriptedGenerator(messy_optimizer), gradient_model=gen, seed=seed, budget=budget, max_new_tokens=8)
    else:
        task_model, optimizer_model = scripted_models()
        ctx = make_ctx(task_model, optimizer_model, seed=seed, budget=budget)
    result = opt.optimize(TASK, SPLITS.train, SPLITS.dev, ctx)
    return opt, result, ctx


def spent(cost: Cost) -> dict:
    return {k: v for k, v in cost.to_dict().items() if k != "wall_seconds"}


def global_rng_state():
    return random.getstate(), torch.random.get_rng_state().clone(), np.random.get_state()[1].copy()


@pytest.mark.parametrize("method", METHODS)
def test_contract(method, request):
    if method == "greater":
        request.getfixturevalue("tiny")  # built before the check: building a model seeds torch on purpose
    before = global_rng_state()
    opt, result, ctx = run(method, request, seed=3)
    after = global_rng_state()

    # returns a candidate
    assert isinstance(result, OptimizeResult)
    assert isinstance(result.best, PromptCandidate) and isinstance(result.best.text, str)
    assert all(isinstance(c, PromptCandidate) for c in result.candidates)
    # reports cost (the context's meter)
    assert isinstance(result.cost, Cost)
    assert spent(result.cost) == spent(ctx.cost)
    calls = result.cost.task_calls + result.cost.optimizer_calls + result.cost.forward_passes
    if isinstance(opt, FixedPrompt):
        assert calls == 0  # a fixed instruction costs nothing
    else:
        assert calls > 0 and result.cost.wall_seconds > 0
        assert ctx.steps, "an optimizer logs its steps"
    # no global random state used
    assert after[0] == before[0], "python's global random state changed"
    assert torch.equal(after[1], before[1]), "torch's global RNG state changed"
    assert np.array_equal(after[2], before[2]), "numpy's global RNG state changed"

    # deterministic under a fixed seed
    _, again, _ = run(method, request, seed=3)
    assert again.best.text == result.best.text
    assert [c.text for c in again.candidates] == [c.text for c in result.candidates]
    assert spent(again.cost) == spent(result.cost)

    if isinstance(opt, FixedPrompt):
        return
    # respects the budget: a limit reached at an intermediate step stops the run there, cleanly ...
    def tokens(c):
        return c["task_tokens_in"] + c["task_tokens_out"]

    total = tokens(result.cost.to_dict())
    marks = [tokens(s["cost"]) for s in ctx.steps[:-1] if 0 < tokens(s["cost"]) < total]
    budget = Budget(task_tokens=marks[0] if marks else max(1, total // 2))
    _, stopped, ctx3 = run(method, request, seed=3, budget=budget)
    assert isinstance(stopped.best.text, str)
    assert tokens(stopped.cost.to_dict()) <= total
    if marks:
        assert tokens(stopped.cost.to_dict()) < total, "the budget did not stop the run early"
    # ... and a budget spent before the start still returns a candidate and asks the optimizer LLM nothing
    _, empty, _ = run(method, request, seed=3, budget=Budget(task_tokens=0))
    assert isinstance(empty.best, PromptCandidate) and isinstance(empty.best.text, str)
    assert empty.cost.optimizer_calls == 0
    # ... no step starts once the budget is spent: only the last logged step may be over it
    over = [budget.exhausted(Cost(**s["cost"])) for s in ctx3.steps]
    late = any(over[:-1])
    assert not late, f"steps were logged after the budget ran out: {over}"


# ------------------------------------------------------------------------------------------ curves


@pytest.fixture(scope="module")
def step_logs(request):
    """method -> its step log, one smoke run each (fixed prompts score nothing and are left out)."""
    logs = {}
    for method in METHODS:
        opt, _, ctx = run(method, request, seed=1)
        if not isinstance(opt, FixedPrompt):
            logs[method] = ctx.steps
    return logs


def test_every_optimizer_logs_the_shared_curve_key(step_logs):
    from harness.reports.curves import curves

    assert {"greater", "ape", "opro", "protegi", "textgrad"} <= set(step_logs)
    for method, steps in step_logs.items():
        values = [s["train_accuracy"] for s in steps if "train_accuracy" in s]
        assert values, f"{method} logs no train_accuracy: {[sorted(s) for s in steps]}"
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in values), (method, values)
        dev = [s["dev_accuracy"] for s in steps if "dev_accuracy" in s]
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in dev), (method, dev)
    assert any("dev_accuracy" in s for s in step_logs["greater"]) and any("dev_accuracy" in s for s in step_logs["textgrad"])

    records = [_record(m, steps) for m, steps in step_logs.items()]
    c = curves(records)
    assert set(c["method"]) == set(step_logs) and c["train_accuracy"].notna().groupby(c["method"]).sum().min() >= 1


def test_curve_plot_has_one_line_per_method(step_logs):
    from harness.reports.curves import curves
    from harness.reports.plots import optimization_curves

    fig = optimization_curves(curves([_record(m, steps) for m, steps in step_logs.items()]))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(panels) == set(step_logs)
    for method, ax in panels.items():
        train = [ln for ln in ax.get_lines() if ln.get_label().endswith(" train")]
        assert len(train) == 1, (method, [ln.get_label() for ln in ax.get_lines()])


def _record(method, steps):
    from harness.core.records import StepRecord
    from harness.reports.loading import CellRecord

    rows = tuple(StepRecord.from_dict(s).logged() for s in steps)
    return CellRecord(run_id=f"optimize-{method}", kind="optimize", method=method, task=TASK.name, model="fake",
                      source_model="fake", seed=1, preset="smoke", prompt="p", accuracy=0.5, ci95=(0.0, 1.0), n=6,
                      primary="options", steps=rows)
