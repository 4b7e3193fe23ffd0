"""`--length-penalty L`: every method that selects prompts selects by score - L x prompt tokens / 100; recorded in
the run spec, off by default, and run ids of records written before it existed are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeworld import make_ctx, parity_task, scripted_models
from typer.testing import CliRunner

from baselines.common import rank
from harness.cli import app
from harness.core.methods import load_methods, make_optimizer
from harness.core.spec import RunSpec
from harness.core.text import prompt_tokens
from harness.core.types import BenchError

RESULTS = Path(__file__).parent.parent / "results"
TASK = parity_task()
SPLITS = TASK.load()
FIXED = {"zs-cot", "no-instruction"}  # one prompt each: nothing to select


def test_reference_records_keep_their_run_ids():
    specs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*/spec.json"))]
    assert len(specs) > 50
    for meta in specs:
        spec = RunSpec.from_dict(meta["spec"])
        assert spec.length_penalty == 0.0 and spec.run_id == meta["run_id"]


def test_the_penalty_is_recorded_and_makes_another_run():
    base = RunSpec(kind="optimize", task="bbh:navigate", model="m", data="fp", method="ape", preset="cpu")
    on = RunSpec.from_dict({**base.to_dict(), "length_penalty": 0.5})
    assert on.to_dict()["length_penalty"] == 0.5 and on.run_id != base.run_id
    assert RunSpec.from_dict(on.to_dict()).run_id == on.run_id
    with pytest.raises(BenchError, match="--length-penalty must be 0 or more"):
        RunSpec.from_dict({**base.to_dict(), "length_penalty": -1})


def test_selection_score_and_rank():
    ctx = make_ctx(length_penalty=2.0)
    assert ctx.selection_score("Be brief.", 0.5) == pytest.approx(0.5 - 2.0 * 3 / 100)
    assert make_ctx().selection_score("Be brief.", 0.5) == 0.5  # off: the score itself
    stats = {"Check every step very carefully and then answer.": (9, 10), "Be brief.": (8, 10)}
    assert rank(stats) == list(stats) and rank(stats, make_ctx()) == list(stats)
    assert rank(stats, ctx) == ["Be brief.", "Check every step very carefully and then answer."]  # 0.9-.18 < 0.8-.06


@pytest.mark.parametrize("method", sorted(set(load_methods()) - FIXED))
def test_every_selecting_method_prefers_short_prompts_under_a_large_penalty(method, request):
    opt = make_optimizer(method, preset="smoke")
    if opt.needs.gradients:
        from tiny import tiny_generator

        gen = tiny_generator()
        ctx = make_ctx(gen, scripted_models()[1], gradient_model=gen, max_new_tokens=8, length_penalty=1000.0)
    else:
        ctx = make_ctx(*scripted_models(), length_penalty=1000.0)
    result = opt.optimize(TASK, SPLITS.train, SPLITS.dev, ctx)
    logged = [s["selection_score"] for s in ctx.steps if "selection_score" in s]  # the anytime curves' y
    assert logged and all(isinstance(x, float) for x in logged)
    scored = [c for c in result.candidates if c.score is not None] or [result.best]
    assert prompt_tokens(result.best.text) == min(prompt_tokens(c.text) for c in scored), (
        result.best.text, [c.text for c in scored])


def test_cli_records_the_penalty_in_the_spec(tmp_path, monkeypatch):
    import harness.runner.pool
    from harness.backends.fake import ScriptedGenerator

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"input": f"Is {i} even?", "target": "Yes" if i % 2 == 0 else "No"}) + "\n"
                            for i in range(10)))
    gen = ScriptedGenerator(lambda rendered, params, i: "so Yes", loglik=lambda r, c: 0.0)
    monkeypatch.setattr(harness.runner.pool.ModelPool, "generator", lambda self, *a, **kw: gen)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    res = CliRunner().invoke(app, ["optimize", "--method", "zs-cot", "--task", f"custom:{data}", "--preset", "smoke",
                                   "--length-penalty", "0.5", "--no-cache", "--results", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    (spec,) = [json.loads(p.read_text())["spec"] for p in (tmp_path / "r").glob("*/spec.json")]
    assert spec["length_penalty"] == 0.5
