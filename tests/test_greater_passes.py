"""GReaTer's token machinery on the tiny random model: answer location and the row layout, the gradient
identities, the merged pass, the KV-cache continuation, and the candidate rules. Fast: seconds in total."""

# ruff: noqa: F811  (the fixtures imported from greaterkit are used as parameter names)
from __future__ import annotations

import pytest
import torch
from greaterkit import EXAMPLES, TASK, YES_NO, gen, gen64, one_thread, rows_for  # noqa: F401

from harness.core.types import Example, PromptPosition
from harness.evaluation.evaluate import build_prompt, with_extractor
from harness.greater.gradients import (
    ALLOWED_CHARS,
    Layout,
    allowed_token_mask,
    candidate_scores,
    forward_loss,
    gradient_pass,
    propose,
)
from harness.greater.optimizer import early_pick, move_cursor
from harness.greater.rescoring import score_rows

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
