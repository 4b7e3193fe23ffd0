"""The HF backend on a tiny randomly initialised model: the real transformers code path in milliseconds."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import tiny_generator, tiny_model

from harness.backends.hf import render_prompt
from harness.core.types import ChatPrompt, GenParams

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


# ------------------------------------------------------------------------------ device


def test_device_resolution(monkeypatch):
    """None: cuda when torch sees a GPU, else mps, else cpu; explicit devices are checked, never guessed."""
    from harness.backends.hf import resolve_device
    from harness.core.types import BenchError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device(None) == "cuda"
    assert resolve_device("cuda") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu" and resolve_device("mps") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == "mps"
    with pytest.raises(BenchError, match="no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(None) == "cpu"
    with pytest.raises(BenchError, match="no Apple MPS"):
        resolve_device("mps")
    for bad in ("gpu", "meta", "cuda:x", ""):
        with pytest.raises(BenchError, match="unknown device"):
            resolve_device(bad)


def test_explicit_cpu_device_gives_identical_results(gen):
    """`device="cpu"` is the default's code path on a CPU machine: the same tokens and log-likelihoods, bit for bit."""
    from harness.backends.hf import HFGenerator

    model, tok = tiny_model()
    on_cpu = HFGenerator("tiny-random", model_obj=model, tokenizer=tok, batch_size=4, revision="seed0", device="cpu")
    assert on_cpu.device == "cpu" and on_cpu.identity == gen.identity  # CPU identities (cache keys) are unchanged
    for params in (GenParams(max_tokens=12), GenParams(temperature=1.0, max_tokens=8, n=2, seed=3)):
        a, b = on_cpu.generate(PROMPTS, params), gen.generate(PROMPTS, params)
        assert [[s.token_ids for s in g.samples] for g in a] == [[s.token_ids for s in g.samples] for g in b]
    reqs = [(PROMPTS[0], " Yes"), (PROMPTS[2], " the quick brown"), (PROMPTS[1], "B")]
    assert on_cpu.loglikelihood(reqs) == gen.loglikelihood(reqs)


def test_a_gpu_run_is_not_served_cpu_responses(tmp_path):
    """The identity (the response cache's key) names the device type unless it is the CPU: CPU keys stay as they
    were, and responses stored by a CPU run are not replayed to a GPU run (its kernels give other numbers)."""
    from harness.backends import device_tag
    from harness.backends.cache import CachedGenerator, ResponseCache

    assert device_tag(None) == device_tag("cpu") == "" and device_tag("cuda:1") == "@cuda" and device_tag("mps") == "@mps"
    gen = tiny_generator(batch_size=4)
    cpu_identity = gen.identity
    assert cpu_identity.endswith(":float32")  # as before the device tag existed
    cached = CachedGenerator(gen, ResponseCache(tmp_path / "responses.sqlite"))
    params = GenParams(max_tokens=4)
    cached.generate(PROMPTS[:2], params)
    cached.generate(PROMPTS[:2], params)
    assert (cached.hits, cached.misses) == (2, 2)
    gen.device = "cuda:0"  # what a model on the first GPU reports (no GPU here: only the key is at stake)
    assert gen.identity == cpu_identity + "@cuda"
    cached.generate(PROMPTS[:2], params)
    assert (cached.hits, cached.misses) == (2, 4)


def test_backend_tensors_are_made_on_the_models_device(gen):
    """With torch's default device set to `meta`, any tensor made without the model's device lands on meta and
    the call fails (meta tensors hold no data): the results match only if every tensor is placed explicitly.
    (No stop strings here: transformers' own stop-string criterion builds its tensors on the default device.)"""
    reqs = [(PROMPTS[0], " Yes"), (PROMPTS[0], "A"), (PROMPTS[2], " the quick brown")]
    params = [GenParams(max_tokens=8), GenParams(temperature=1.0, max_tokens=6, n=2, seed=5)]
    want = [[[s.token_ids for s in g.samples] for g in gen.generate(PROMPTS, p)] for p in params], gen.loglikelihood(reqs)
    with torch.device("meta"):
        got = [[[s.token_ids for s in g.samples] for g in gen.generate(PROMPTS, p)] for p in params], gen.loglikelihood(reqs)
    assert got == want


def test_device_reaches_the_backend_and_the_records(monkeypatch, tmp_path):
    """`device` goes ModelPool -> open_generator -> HFGenerator (and to a child pool); spec.json records it."""
    import json

    import harness.backends
    from harness.runner.pool import ModelPool
    from harness.runner.run import torch_device

    seen = []
    monkeypatch.setattr(harness.backends, "open_generator", lambda model, **kw: seen.append(kw["device"]) or object())
    pool = ModelPool(device="cpu")
    pool.generator("m")
    assert seen == ["cpu"] and pool.child_settings()["device"] == "cpu"
    assert ModelPool().child_settings()["device"] is None

    class Cached:  # what CachedGenerator looks like from outside
        def __init__(self, inner):
            self.inner = inner

    hf = tiny_generator()
    assert torch_device(Cached(hf)) == {"device": "cpu"}
    assert torch_device(object(), hf) == {"device": "cpu"} and torch_device(object()) == {}

    from harness.core.spec import RunSpec
    from harness.runner.records import RunFolder

    folder = RunFolder(tmp_path, RunSpec(kind="eval", task="bbh:navigate", model="tiny", data="d", method="prompt"))
    folder.start(generator=hf.identity, **torch_device(hf))
    meta = json.loads((folder.path / "spec.json").read_text())
    assert meta["device"] == "cpu"
    import torch

    assert meta["threads"]["torch_threads"] == torch.get_num_threads()  # provenance only: the run id ignores it


def test_cli_device_option(monkeypatch):
    """--device on bench eval, optimize and run reaches the generator or the model pool."""
    from typer.testing import CliRunner

    import harness.backends
    import harness.runner.cell
    import harness.runner.grid
    from harness.cli import app
    from harness.core.types import BenchError

    seen = []

    def stop(**kw):
        seen.append(kw)
        raise BenchError("stop here")

    monkeypatch.setattr(harness.backends, "open_generator", lambda model, **kw: stop(device=kw["device"]))
    monkeypatch.setattr(harness.runner.cell, "run_cell", lambda spec, pool, **kw: stop(device=pool.device))
    monkeypatch.setattr(harness.runner.grid, "run_grid", lambda *a, pool, **kw: stop(device=pool.device))
    runner = CliRunner()
    for cmd in (["eval"], ["optimize", "--method", "zs-cot"], ["run", "--methods", "zs-cot"]):
        result = runner.invoke(app, [*cmd, "--backend", "hf", "--device", "cpu"])
        assert "stop here" in result.output, result.output
        result = runner.invoke(app, [*cmd, "--backend", "hf"])
        assert "stop here" in result.output, result.output
    assert [kw["device"] for kw in seen] == ["cpu", None] * 3


def test_half_precision_on_a_cpu_without_native_instructions_gets_a_one_line_note(tmp_path):
    from harness.backends import cpu_flags, half_precision_note

    avx2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}
    note = half_precision_note("bfloat16", "cpu", flags=avx2)
    assert note and "\n" not in note and "avx512_bf16 or amx_bf16" in note and "--dtype float32" in note
    assert half_precision_note("float16", "cpu", flags=avx2) and "avx512_fp16" in half_precision_note("float16", "cpu", flags=avx2)
    assert half_precision_note("bfloat16", "cpu", flags=avx2 | {"amx_bf16"}) is None  # AMX: bf16 is the fast dtype
    assert half_precision_note("bfloat16", "cpu", flags=avx2 | {"avx512_bf16"}) is None
    assert half_precision_note("float32", "cpu", flags=avx2) is None
    assert half_precision_note("bfloat16", "cuda:0", flags=avx2) is None
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"} and cpu_flags(tmp_path / "missing") is None
