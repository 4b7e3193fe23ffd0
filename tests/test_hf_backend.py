"""The HF backend on a tiny randomly initialised model: the real transformers code path in milliseconds."""

from __future__ import annotations

import math

import pytest
import torch

from harness.backends.hf import render_prompt
from harness.types import ChatPrompt, GenParams
from tiny import tiny_generator

PROMPTS = [
    ChatPrompt("is the sky blue?"),
    ChatPrompt("the quick brown fox jumps over the lazy dog, and then it walks ten steps forward. Why?"),
    ChatPrompt("Options: (A) (B)", "Let's think step by step."),
    "Question: 1 2 3\nAnswer:",
    ChatPrompt("valid or invalid"),
]


@pytest.fixture(scope="module")
def gen():
    return tiny_generator(batch_size=4)


def test_batched_greedy_equals_one_at_a_time(gen):
    params = GenParams(max_tokens=16)
    batched = gen.generate(PROMPTS, params)
    single = [gen.generate([p], params)[0] for p in PROMPTS]
    assert [g.prompt for g in batched] == [gen.render(p) for p in PROMPTS]  # input order kept
    for b, s in zip(batched, single):
        assert b.samples[0].token_ids == s.samples[0].token_ids
        assert b.text == s.text
        assert b.prompt_tokens == s.prompt_tokens


def test_greedy_matches_manual_argmax_decoding(gen):
    """The backend's greedy tokens are the argmax chain of the model's own logits."""
    prompt = PROMPTS[1]
    ids = gen.encode(gen.render(prompt))
    out = gen.generate([prompt], GenParams(max_tokens=6)).pop()
    seq = list(ids)
    with torch.no_grad():
        for _ in range(len(out.samples[0].token_ids)):
            nxt = int(gen.model(torch.tensor([seq])).logits[0, -1].argmax())
            seq.append(nxt)
    assert tuple(seq[len(ids):]) == out.samples[0].token_ids


def test_max_tokens_and_length_finish(gen):
    out = gen.generate([PROMPTS[1]], GenParams(max_tokens=5))[0]
    assert len(out.samples[0].token_ids) <= 5
    if len(out.samples[0].token_ids) == 5:
        assert out.samples[0].finish_reason == "length"


def test_stop_string_truncates(gen):
    free = gen.generate([PROMPTS[1]], GenParams(max_tokens=12))[0].text
    word = free.split()[1] if len(free.split()) > 1 else free.strip()[:2]
    cut = gen.generate([PROMPTS[1]], GenParams(max_tokens=12, stop=(word,)))[0]
    assert word not in cut.text
    assert cut.samples[0].finish_reason == "stop"
    assert free.startswith(cut.text)


def test_sampling_is_seeded_and_n_samples(gen):
    p = GenParams(temperature=1.0, max_tokens=8, n=3, seed=7)
    a = gen.generate(PROMPTS[:2], p)
    b = gen.generate(PROMPTS[:2], p)
    c = gen.generate(PROMPTS[:2], GenParams(temperature=1.0, max_tokens=8, n=3, seed=8))
    assert all(len(g.samples) == 3 for g in a)
    assert [[s.token_ids for s in g.samples] for g in a] == [[s.token_ids for s in g.samples] for g in b]
    assert [[s.token_ids for s in g.samples] for g in a] != [[s.token_ids for s in g.samples] for g in c]
    before = torch.random.get_rng_state()
    gen.generate(PROMPTS[:1], p)
    assert torch.equal(before, torch.random.get_rng_state())  # global RNG untouched


def test_loglikelihood_matches_full_forward(gen):
    reqs = [(PROMPTS[0], " Yes"), (PROMPTS[0], "A"), (PROMPTS[2], " the quick brown"), (PROMPTS[1], "B")]
    got = gen.loglikelihood(reqs)
    for (prompt, cont), value in zip(reqs, got):
        ctx = gen.render(prompt)
        c_ids = gen.encode(ctx.rstrip(" "))
        k_ids = gen.tokenizer(ctx[len(ctx.rstrip(" ")):] + cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(gen.model(torch.tensor([c_ids + k_ids])).logits[0], -1)
        want = sum(float(logp[len(c_ids) - 1 + j, t]) for j, t in enumerate(k_ids))
        assert math.isclose(value, want, abs_tol=1e-4)
    # batched equals one at a time
    assert all(math.isclose(a, gen.loglikelihood([r])[0], abs_tol=1e-4) for a, r in zip(got, reqs))


def test_render_chat_and_plain(gen):
    assert gen.render(ChatPrompt("hi", "Sure")).endswith("<|im_start|>assistant\nSure")
    assert render_prompt(gen.tokenizer, ChatPrompt("hi", "Sure"), use_chat_template=False) == "Question: hi\nAnswer: Sure"
    assert gen.render("raw text") == "raw text"
    assert "tiny-random" in gen.identity and "float32" in gen.identity


def test_parameters_frozen(gen):
    assert not any(p.requires_grad for p in gen.model.parameters())
