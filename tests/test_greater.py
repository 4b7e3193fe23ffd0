"""GReaTer on the tiny random model: the gradient identities, the KV-cache continuation, the candidate rules,
answer location, determinism, resume after a crash and the budget stop. Fast: seconds in total."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny import tiny_generator, tiny_model

from harness.core.context import OptimizeContext
from harness.core.types import AnswerFormat, BenchError, Budget, Example, PromptPosition, Splits
from harness.evaluation.evaluate import build_prompt, evaluate, with_extractor
from harness.greater.config import PRESETS, config_for
from harness.greater.gradients import (
    ALLOWED_CHARS,
    Layout,
    allowed_token_mask,
    candidate_scores,
    forward_loss,
    gradient_pass,
    propose,
)
from harness.greater.optimizer import Greater, early_pick, make, move_cursor
from harness.greater.rescoring import score_rows, score_rows_by_decoder
from tasks.base import make_task

QUESTIONS = [
    "Is the sky blue? Options: (A) yes (B) no",
    "Does the fox jump over the dog? Options: (A) yes (B) no",
    "Is the answer valid? Options: (A) yes (B) no",
    "Does it walk ten steps forward? Options: (A) yes (B) no",
    "Is the dog lazy? Options: (A) yes (B) no",
    "Is it true? Options: (A) yes (B) no",
]
EXAMPLES = tuple(Example(id=f"q{i}", input=q, target="AB"[i % 2]) for i, q in enumerate(QUESTIONS))
TASK = make_task(
    "custom:tiny", AnswerFormat.LETTER, ("A", "B"),
    lambda **_: Splits(train=EXAMPLES, dev=EXAMPLES[:4], test=EXAMPLES[:4], rule="test rows"),
)
YES_NO = make_task("custom:yn", AnswerFormat.YES_NO, ("Yes", "No"), lambda **_: None)
SMOKE = {"n_train": 4, "steps": 3, "train_reasoning_tokens": 8, "top_k": 8, "keep": 2, "dev_limit": 2,
         "per_intersection": 2, "initial_prompt": "think step by step."}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's matmuls are microseconds: with two threads on a busy machine they wait on each
    other (30x slower here). Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gen():
    return tiny_generator()


@pytest.fixture(scope="module")
def gen64():
    """The tiny model in float64: finite differences and gradient identities without float32 noise."""
    from harness.backends.hf import HFGenerator

    model, tok = tiny_model()
    return HFGenerator("tiny-random-f64", model_obj=model.double(), tokenizer=tok, revision="seed0-f64")


def rows_for(gen, prompt="think step by step.", position="after", reasoning=" the answer is yes.", n=4):
    lay = Layout(gen, position, "Use")
    ids = lay.initial_ids(prompt)
    rows = [lay.row(ex, ids, reasoning, TASK.extractor(ex), ex.target, TASK.options_for(ex)) for ex in EXAMPLES[:n]]
    return lay, ids, rows


def run(gen, tmp_path=None, seed=0, budget=None, progress=None, **over):
    ctx = OptimizeContext.create(scorer=evaluate,
        task_model=gen, gradient_model=gen, seed=seed, max_new_tokens=8, budget=budget or Budget(),
        steps_path=(tmp_path / "steps.jsonl") if tmp_path else None, progress=progress or (lambda _m: None),
    )
    opt = Greater(config_for("smoke", **{**SMOKE, **over}))
    return opt.optimize(TASK, EXAMPLES, EXAMPLES[:4], ctx), ctx


# ------------------------------------------------------------------------------ layout and answers


class MergingGen:
    """The tiny tokenizer plus tokens "$A" and "$B", as Llama-3's tokenizer can merge them (layout only)."""

    def __init__(self, gen):
        import copy

        self.tokenizer = copy.deepcopy(gen.tokenizer)
        self.tokenizer.add_tokens(["$A", "$B"])
        self.use_chat_template = True

    def render(self, prompt):
        from harness.backends.hf import render_prompt

        return render_prompt(self.tokenizer, prompt, True)

    def encode(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_answer_tokens_located_by_offsets_when_dollar_merges(gen):
    m = MergingGen(gen)
    tok = m.tokenizer
    assert "$A" in [tok.decode([i]) for i in tok("is $A", add_special_tokens=False)["input_ids"]]
    _, _, rows = rows_for(m)
    r = rows[0]  # gold "A"
    answer = [tok.decode([r.ids[a]]) for a in r.answer_at]
    assert answer == ["$A"]  # the merged token is the answer token...
    assert tok("A", add_special_tokens=False)["input_ids"][0] not in r.ids[r.answer_at[0] - 3 :]  # ...id search fails
    assert tok.decode(list(r.ids[: r.answer_at[0]])).endswith(" is ")
    # the allowed answers' first tokens share the context: "$A" and "$B"
    assert [tok.decode([i]) for i in r.option_ids] == ["$A", "$B"] and r.gold_option == 0
    assert rows[1].gold_option == 1
    # without the merge the answer is the single token after " $"
    _, _, rows = rows_for(gen)
    r = rows[0]
    assert [gen.tokenizer.decode([r.ids[a]]) for a in r.answer_at] == ["A"]
    assert gen.tokenizer.decode([r.ids[r.answer_at[0] - 1]]) == " $"


def test_answer_tokens_yes_no_with_space(gen):
    lay = Layout(gen, "after", "Use")
    ids = lay.initial_ids("think step by step.")
    ex = Example(id="y", input="Is the sky blue?", target="No")
    r = lay.row(ex, ids, " yes.", YES_NO.extractor(ex), "No", ("Yes", "No"))
    text = gen.tokenizer.decode(list(r.ids))
    assert text.endswith("is $ No")
    answer = gen.tokenizer.decode([r.ids[a] for a in r.answer_at])
    assert answer.strip() == "No" and r.answer_at[-1] == len(r.ids) - 1
    assert r.gold_option == 1 and len(r.option_ids) == 2


@pytest.mark.parametrize("template", [True, False], ids=["chat", "base"])
@pytest.mark.parametrize("position", list(PromptPosition))
def test_row_is_the_evaluators_text(gen, position, template):
    """Segment-built ids decode to exactly what the evaluator renders, with the prompt at prompt_start, and
    equal the joint tokenization of that text up to the prompt (chat template, or a base model's layout)."""
    from harness.backends.hf import HFGenerator

    if not template:
        gen = HFGenerator("tiny-base", model_obj=gen.model, tokenizer=gen.tokenizer)
        gen.use_chat_template = False
    lay, ids, rows = rows_for(gen, position=position)
    instr = lay.instruction(ids)
    for ex, r in zip(EXAMPLES, rows):
        want = gen.render(with_extractor(build_prompt(ex, instr, position), " the answer is yes.", TASK.extractor(ex)))
        assert gen.tokenizer.decode(list(r.ids)) == want + ex.target
        assert list(r.ids[r.prompt_start : r.prompt_start + r.prompt_len]) == ids
        joint = gen.tokenizer(want + ex.target, add_special_tokens=False)["input_ids"]
        assert joint[: r.prompt_start + r.prompt_len] == list(r.ids[: r.prompt_start + r.prompt_len])


# ------------------------------------------------------------------------------ gradient identities


def test_gradient_score_equals_one_hot_autograd_and_finite_difference(gen64):
    model = gen64.model
    _lay, ids, rows = rows_for(gen64)
    pos, kw = 1, {"temperature": 0.2, "fluency_weight": 0.2, "loss": "full"}
    g = gradient_pass(model, rows, pos, ids[pos], **kw).grad
    emb = model.get_input_embeddings().weight
    cands = [ids[pos], 40, 80, 290, 362]
    one_hot = torch.zeros(len(cands), dtype=emb.dtype)
    one_hot[0] = 1.0
    one_hot.requires_grad_(True)
    with torch.enable_grad():
        loss, _, _ = forward_loss(model, rows, pos, one_hot @ emb[cands], **kw)
        loss.backward()
    assert torch.allclose(one_hot.grad, emb[cands] @ g, rtol=1e-8, atol=1e-10)
    # the normalised scores rank candidates exactly as the one-hot gradient does
    assert sorted(range(5), key=lambda j: candidate_scores(model, cands, g)[j]) == sorted(range(5), key=lambda j: float(one_hot.grad[j]))

    # finite difference along E[c] - E[current]: the loss changes by h (E[c] - E[current]) . g
    def value(e):
        with torch.no_grad():
            return float(forward_loss(model, rows, pos, e, **kw)[0])

    # (h is not tiny: RMSNorm computes in float32 even in a float64 model; the error here is O(h^2))
    base, h = emb[ids[pos]], 1e-2
    for c in cands[1:]:
        d = emb[c] - base
        fd = (value(base + h * d) - value(base - h * d)) / (2 * h)
        assert fd == pytest.approx(float(d @ g), rel=1e-3, abs=1e-6)


def test_merged_pass_equals_separate_passes(gen):
    """One padded batched pass gives each row's proposal logits and the summed gradient of batch-1 passes."""
    model = gen.model
    lay, ids, rows = rows_for(gen, reasoning=" yes", n=4)
    rows[1] = lay.row(EXAMPLES[1], ids, " the quick brown fox jumps over the lazy dog.", TASK.extractor(EXAMPLES[1]), "B", ("A", "B"))
    pos, kw = 2, {"temperature": 0.2, "fluency_weight": 0.2, "loss": "full"}
    merged = gradient_pass(model, rows, pos, ids[pos], micro_batch=4, **kw)
    singles = [gradient_pass(model, [r], pos, ids[pos], micro_batch=1, **kw) for r in rows]
    assert len({len(r.ids) for r in rows}) > 1  # padding is exercised
    for r, s, p in zip(rows, singles, merged.proposal_logits):
        with torch.no_grad():
            plain = model(input_ids=torch.tensor([r.ids[: r.slot(pos)]])).logits[0, -1]
        assert torch.allclose(p, plain, atol=1e-4)
        assert torch.allclose(s.proposal_logits[0], plain, atol=1e-4)
    total = sum(s.grad for s in singles)
    assert torch.allclose(merged.grad, total, rtol=1e-4, atol=1e-5)
    cands = list(range(20, 60))
    a, b = candidate_scores(model, cands, merged.grad), candidate_scores(model, cands, total)
    assert a == pytest.approx(b, abs=1e-4)


def test_kv_prefix_cache_equals_full_forward(gen):
    model = gen.model
    lay, ids, _ = rows_for(gen)
    pos = 2
    groups, shared = [], []
    for ex in EXAMPLES[:3]:
        group = []
        for c, reasoning in ((ids[pos], " yes"), (290, " the answer is no, the dog is lazy."), (362, "")):
            variant = ids[:pos] + [c] + ids[pos + 1 :]
            group.append(lay.row(ex, variant, reasoning, TASK.extractor(ex), ex.target, ("A", "B")))
        groups.append(group)
        shared.append(group[0].slot(pos))
    for loss in ("full", "options"):
        cached, n1 = score_rows(model, groups, shared, temperature=0.2, loss=loss, prefix_cache=True)
        full, n2 = score_rows(model, groups, shared, temperature=0.2, loss=loss, prefix_cache=False)
        assert n1 < n2  # fewer tokens run
        for gc, gf in zip(cached, full):
            for c, f in zip(gc, gf):
                assert c.answer_loss == pytest.approx(f.answer_loss, abs=1e-5)
                assert c.fluency == pytest.approx(f.fluency, abs=1e-5)
                assert (c.mistake_greedy, c.mistake_options) == (f.mistake_greedy, f.mistake_options)


# ------------------------------------------------------------------------------ candidates


def test_allowed_token_mask(gen):
    tok = gen.tokenizer
    mask = allowed_token_mask(tok)
    assert mask.shape[0] == len(tok) and 0 < int(mask.sum()) < len(tok)
    for i in range(len(tok)):
        text = tok.decode([i])
        ok = i not in tok.all_special_ids and bool(text.strip()) and set(text) <= ALLOWED_CHARS
        assert bool(mask[i]) == ok, (i, text)
    space = tok(" ", add_special_tokens=False)["input_ids"]
    assert len(space) == 1 and not mask[space[0]]  # whitespace-only tokens are never candidates
    assert not any(mask[i] for i in tok.all_special_ids)


def test_proposal_filter_grow_k_and_no_repetition(gen):
    import random

    allowed = allowed_token_mask(gen.tokenizer)
    ok_ids = [i for i in range(len(allowed)) if allowed[i]]
    bad_id = next(i for i in range(len(allowed)) if not allowed[i])
    common, previous = ok_ids[:6], ok_ids[6]
    logits = torch.zeros(5, len(allowed))
    for row in range(5):
        logits[row, ok_ids[10 + 4 * row : 14 + 4 * row]] = 10.0  # each row's own top 4
        logits[row, common] = 5.0  # shared, ranked below
        logits[row, previous] = 50.0  # the token at pos-1: top everywhere, never proposed
        logits[row, bad_id] = 60.0  # disallowed: never proposed
    prop = propose(logits, allowed, previous, k=4, intersections=3, per_intersection=5, min_candidates=6,
                   k_growth=2, rng=random.Random(0))
    assert prop.candidates == sorted(common)  # the first k with 6 shared tokens: 4 own + 6 common
    assert prop.k == 10
    assert previous not in prop.candidates and bad_id not in prop.candidates
    # enough at once: k stays
    prop = propose(logits, allowed, previous, k=10, intersections=3, per_intersection=5, min_candidates=2,
                   k_growth=2, rng=random.Random(0))
    assert prop.k == 10
    # an extra filter (round trip) removes candidates and makes k grow further
    prop = propose(logits, allowed, previous, k=4, intersections=3, per_intersection=5, min_candidates=6,
                   k_growth=2, rng=random.Random(0), keep=lambda t: t != common[0])
    assert common[0] not in prop.candidates and prop.k > 10 and len(prop.candidates) >= 6
    assert prop.rejected_retokenize == 1


def test_early_pick_and_move_cursor():
    assert early_pick([" a", " b.", "."], cursor=1, prompt_len=6) is None  # first half: no early accept
    assert early_pick([" a", " b.", "."], cursor=3, prompt_len=6) == 1
    assert early_pick([" a", " b"], cursor=5, prompt_len=6) is None
    assert move_cursor([1, 2, 3], 1, " x", 9, 64) == ([1, 2, 3], 2, False)
    assert move_cursor([1, 2, 3], 2, ".", 9, 64) == ([1, 2, 3], 0, False)  # sentence end: wrap
    assert move_cursor([1, 2, 3], 2, " x", 9, 64) == ([1, 2, 3, 9], 3, True)  # grow with a placeholder
    assert move_cursor([1, 2, 3], 2, " x", 9, 3) == ([1, 2, 3], 0, False)  # at the length cap: wrap


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
