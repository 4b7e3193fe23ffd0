"""GReaTer in bfloat16 and re-scored by the task model, on the tiny random model: both track the float32
gradient-model path (same decisions on the tiny model) and fall back with a note where they cannot serve."""

# ruff: noqa: F811  (the fixtures imported from greaterkit are used as parameter names)
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from greaterkit import EXAMPLES, TASK, gen, one_thread, rows_for, run  # noqa: F401
from tiny import tiny_model

from harness.core.types import BenchError
from harness.greater.config import config_for
from harness.greater.gradients import (
    candidate_scores,
    gradient_pass,
)
from harness.greater.rescoring import score_rows, score_rows_by_decoder

# ------------------------------------------------------------------------------ bfloat16


@pytest.fixture(scope="module")
def gen_bf16():
    """The same tiny model with bfloat16 weights (what `--dtype bfloat16` loads)."""
    from harness.backends.hf import HFGenerator

    model, tok = tiny_model()
    return HFGenerator("tiny-random", model_obj=model.to(torch.bfloat16), tokenizer=tok, revision="seed0", dtype="bfloat16")


def test_bfloat16_gradient_pass_and_rescoring_run_in_bf16_and_track_float32(gen, gen_bf16):
    """--dtype bfloat16: the forward and backward run in bf16 (the leaf, its gradient and the hidden states),
    losses are read in float32; the gradient direction, the candidate ranking and the re-scoring follow the
    float32 model's closely (the benchmark measures how often decisions change on real models)."""
    kw = {"temperature": 0.2, "fluency_weight": 0.2, "loss": "full"}
    _lay, ids, rows = rows_for(gen)
    pos = 1
    g32 = gradient_pass(gen.model, rows, pos, ids[pos], **kw)
    g16 = gradient_pass(gen_bf16.model, rows, pos, ids[pos], **kw)
    assert g16.grad.dtype == torch.bfloat16 and g32.grad.dtype == torch.float32
    assert torch.isfinite(g16.grad.float()).all() and float(g16.grad.float().norm()) > 0
    cos = torch.nn.functional.cosine_similarity(g16.grad.float(), g32.grad, dim=0)
    assert float(cos) > 0.95
    assert g16.loss == pytest.approx(g32.loss, rel=0.05)
    cands = list(range(20, 120))
    s32, s16 = candidate_scores(gen.model, cands, g32.grad), candidate_scores(gen_bf16.model, cands, g16.grad)
    best32 = set(sorted(cands, key=lambda c: s32[cands.index(c)])[:10])
    best16 = set(sorted(cands, key=lambda c: s16[cands.index(c)])[:10])
    assert len(best32 & best16) >= 7  # the top candidates by gradient mostly agree
    groups, shared = [[r, r] for r in rows[:2]], [r.slot(pos) for r in rows[:2]]
    (a, _), (b, _) = (score_rows(m.model, groups, shared, temperature=0.2, loss="options") for m in (gen, gen_bf16))
    for ga, gb in zip(a, b):
        for x, y in zip(ga, gb):
            assert y.answer_loss == pytest.approx(x.answer_loss, rel=0.1, abs=0.05)
            assert y.fluency == pytest.approx(x.fluency, rel=0.05)


def test_fp32_accumulated_linear_gives_the_bf16_products_numbers(monkeypatch):
    """The measuring aid for CPUs without bf16 instructions: a bf16 F.linear inside the block gives what torch's
    own bf16 product gives (bf16 operands, float32 sums, a bf16 result), forward and backward, not the float32
    product; outside the block F.linear is torch's again."""
    import torch.nn.functional as F

    from harness.backends.bf16 import fp32_accumulated_linear

    torch.manual_seed(0)
    x32, w32, b32 = torch.randn(16, 96), torch.randn(40, 96), torch.randn(40)
    x, w, b = x32.bfloat16().requires_grad_(True), w32.bfloat16(), b32.bfloat16()
    real = F.linear(x, w, b)
    (g_real,) = torch.autograd.grad(real.float().square().sum(), x)
    original = F.linear
    with fp32_accumulated_linear():
        emulated = F.linear(x, w, b)
        (g_emul,) = torch.autograd.grad(emulated.float().square().sum(), x)
        assert F.linear(x32, w32).dtype == torch.float32  # other dtypes untouched
    assert F.linear is original
    assert emulated.dtype == torch.bfloat16 and g_emul.dtype == torch.bfloat16
    ulp = 2.0**-7  # bf16's relative spacing: the two may differ by the rounding of a differently ordered sum
    assert torch.allclose(emulated.float(), real.float(), rtol=ulp, atol=ulp)
    assert torch.allclose(g_emul.float(), g_real.float(), rtol=2 * ulp, atol=2 * ulp)
    exact = F.linear(x.detach().float(), w.float(), b.float())
    assert not torch.equal(emulated.float(), exact)  # the result is rounded to bf16, as the real product's is
    assert torch.equal(emulated.float(), exact.bfloat16().float())
    seen = []  # and the product itself ran in float32 kernels (the point: bf16's are a scalar loop on AVX2)
    monkeypatch.setattr(F, "linear", lambda a, m, c=None: seen.append((a.dtype, m.dtype)) or original(a, m, c))
    with fp32_accumulated_linear():
        F.linear(x, w, b)
    assert seen == [(torch.float32, torch.float32)]


def test_emulated_bf16_model_tracks_the_real_bf16_model(gen_bf16):
    """A whole bf16 forward and gradient pass under the emulation: the real bf16 run's numbers, not float32's."""
    from harness.backends.bf16 import fp32_accumulated_linear

    kw = {"temperature": 0.2, "fluency_weight": 0.2, "loss": "full"}
    _lay, ids, rows = rows_for(gen_bf16)
    real = gradient_pass(gen_bf16.model, rows, 1, ids[1], **kw)
    with fp32_accumulated_linear():
        emul = gradient_pass(gen_bf16.model, rows, 1, ids[1], **kw)
    assert emul.grad.dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(emul.grad.float(), real.grad.float(), dim=0)
    assert float(cos) > 0.99 and emul.loss == pytest.approx(real.loss, rel=0.01)


def test_bfloat16_run_completes_with_bf16_decoding_and_records(gen_bf16):
    res, ctx = run(gen_bf16)
    steps = [s for s in ctx.steps if s.get("kind") == "step"]
    assert len(steps) == 3 and res.best.text.startswith("Use ")
    assert gen_bf16.identity.endswith(":bfloat16")  # the cache key and spec.json say bf16
    for s in steps:
        assert all(c["grad_score"] == c["grad_score"] for c in s["candidates"])  # no NaN
        assert s["chosen"]["mistake_rate"] is not None


# ------------------------------------------------------------------------------ re-scoring by the task model


def test_decoder_rescoring_equals_the_full_forward_on_options(gen):
    """next_token_logprobs at the answer position + the prompt-only fluency forward give the options loss,
    the options mistake and the fluency of a whole-sequence forward."""
    lay, ids, _ = rows_for(gen)
    pos, rows = 2, []
    for ex in EXAMPLES[:4]:
        for c, reasoning in ((ids[pos], " yes"), (290, " the answer is no, the dog is lazy."), (362, "")):
            rows.append(lay.row(ex, ids[:pos] + [c] + ids[pos + 1 :], reasoning, TASK.extractor(ex), ex.target, ("A", "B")))
    full, _ = score_rows(gen.model, [[r] for r in rows], [r.slot(pos) for r in rows], temperature=0.2, loss="options",
                         prefix_cache=False)
    got, tokens = score_rows_by_decoder(gen.model, gen, rows, temperature=0.2)
    assert tokens > 0 and len(got) == len(rows)
    for (f,), g in zip(full, got):
        assert g.answer_loss == pytest.approx(f.answer_loss, abs=1e-4)
        assert g.fluency == pytest.approx(f.fluency, abs=1e-4)
        assert g.mistake_options == f.mistake_options
    with pytest.raises(ValueError, match="allowed answers"):
        score_rows_by_decoder(gen.model, gen, [dataclasses.replace(rows[0], option_ids=())], temperature=0.2)


def test_rescoring_by_the_task_model_makes_the_same_run(gen):
    small = {"steps": 2, "mistake": "options", "loss": "options", "tie_break": "loss"}
    a, ctx_a = run(gen, **small)
    b, ctx_b = run(gen, rescore_with="task_model", **small)
    assert b.meta["variants"]["rescore_with"] == "task_model" and a.meta["variants"]["rescore_with"] == "gradient_model"
    sa, sb = ([s for s in c.steps if s.get("kind") == "step"] for c in (ctx_a, ctx_b))
    assert [s["rescored_by"] for s in sb] == ["task_model"] * 2
    assert [s["chosen"]["id"] for s in sa] == [s["chosen"]["id"] for s in sb] and a.best.text == b.best.text
    for x, y in zip(sa, sb):
        json.dumps(y)  # a step record is plain JSON (the step log)
        assert [(c["id"], c["grad_score"]) for c in x["candidates"]] == [(c["id"], c["grad_score"]) for c in y["candidates"]]
        assert [c["id"] for c in x["rescored"]] == [c["id"] for c in y["rescored"]]
        for cx, cy in zip(x["rescored"], y["rescored"]):
            assert cy["mistake_rate"] == cx["mistake_rate"] and cy["answer_loss"] == pytest.approx(cx["answer_loss"], abs=1e-4)
        assert y["tokens"]["rescoring"] > 0 and x["tokens"]["rescoring"] > 0


def test_task_model_rescoring_falls_back_with_a_note(gen):
    res, _ = run(gen, steps=1, rescore_with="task_model")  # the paper's full loss and greedy mistakes
    v = res.meta["variants"]
    assert v["rescore_with"] == "gradient_model" and any("options loss" in n for n in v["notes"])
    with pytest.raises(BenchError, match="rescore_with"):
        config_for("smoke", rescore_with="vllm")
