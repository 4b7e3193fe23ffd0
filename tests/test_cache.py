from __future__ import annotations

import dataclasses
import multiprocessing as mp
import sqlite3

import pytest

from harness.backends.cache import CachedGenerator, ResponseCache, generation_key, loglikelihood_key, params_key
from harness.backends.fake import ScriptedGenerator, ScriptExhausted
from harness.core.types import ChatPrompt, Generator, GenParams

# one changed value per GenParams field, from BASE (temperature > 0 so n may change)
BASE = GenParams(temperature=0.5, top_p=1.0, max_tokens=16, stop=(), seed=0, n=1)
CHANGED = {
    "temperature": 0.7,
    "top_p": 0.9,
    "max_tokens": 17,
    "stop": ("\n",),
    "seed": 1,
    "n": 2,
}


def echo(rendered: str, params: GenParams, index: int) -> str:
    return f"{rendered.split()[-1]} t={params.temperature} s={params.seed} i={index}"


def make(tmp_path, reply=echo, identity="fake", loglik=None):
    inner = ScriptedGenerator(reply, loglik=loglik, identity=identity)
    return inner, CachedGenerator(inner, ResponseCache(tmp_path / "sub" / "cache.sqlite"))


def test_cached_generator_is_a_generator(tmp_path):
    inner, cached = make(tmp_path)
    assert isinstance(cached, Generator)
    assert cached.identity == "fake"
    assert cached.render(ChatPrompt("q", "a")) == "USER: q\nASSISTANT: a"


def test_cache_file_is_created_lazily(tmp_path):
    cache = ResponseCache(tmp_path / "deep" / "dir" / "c.sqlite")
    assert not (tmp_path / "deep").exists()
    assert cache.counts() == {"generations": 0, "loglikelihoods": 0}
    assert (tmp_path / "deep" / "dir" / "c.sqlite").exists()
    conn = sqlite3.connect(tmp_path / "deep" / "dir" / "c.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_miss_then_hit(tmp_path):
    inner, cached = make(tmp_path)
    first = cached.generate(["a b", ChatPrompt("c", "d")], BASE)
    assert (cached.hits, cached.misses) == (0, 2)
    second = cached.generate(["a b", ChatPrompt("c", "d")], BASE)
    assert (cached.hits, cached.misses) == (2, 2)
    assert len(inner.calls) == 1  # the second call never reached the backend
    assert second == first
    assert second[0].text == "b t=0.5 s=0 i=0"
    assert second[1].prompt == "USER: c\nASSISTANT: d"
    assert second[0].samples[0].token_ids == first[0].samples[0].token_ids != ()
    assert second[0].prompt_tokens == 2


def test_hit_survives_a_new_process_view(tmp_path):
    """Stored rows are read back by a fresh cache object on the same file (text, ids, finish, tokens)."""
    inner, cached = make(tmp_path, reply=["one two three", "x"])
    first = cached.generate(["p q r s"], dataclasses.replace(BASE, max_tokens=2))
    assert first[0].samples[0].finish_reason == "length"
    again = CachedGenerator(ScriptedGenerator([]), ResponseCache(tmp_path / "sub" / "cache.sqlite"))
    out = again.generate(["p q r s"], dataclasses.replace(BASE, max_tokens=2))
    assert out == first
    assert out[0].prompt_tokens == 4 and out[0].samples[0].text == "one two"


def test_bypass_with_cache_none(tmp_path):
    inner = ScriptedGenerator(echo)
    cached = CachedGenerator(inner, None)
    cached.generate(["a"], BASE)
    cached.generate(["a"], BASE)
    assert len(inner.calls) == 2
    assert (cached.hits, cached.misses) == (0, 2)
    assert not list(tmp_path.iterdir())
    inner_ll = ScriptedGenerator(echo, loglik=lambda p, c: -1.0)
    bypass = CachedGenerator(inner_ll, None)
    assert bypass.loglikelihood([("a", "b")]) == [-1.0]
    assert bypass.loglikelihood([("a", "b")]) == [-1.0]
    assert len(inner_ll.loglik_calls) == 2


def test_every_genparams_field_is_in_the_key(tmp_path):
    fields = {f.name for f in dataclasses.fields(GenParams)}
    assert set(CHANGED) == fields, "a GenParams field is missing from CHANGED: add it"
    assert set(params_key(BASE)) == fields
    inner, cached = make(tmp_path)
    cached.generate(["a"], BASE)
    base_key = generation_key("fake", "a", BASE, 0)
    for name, value in CHANGED.items():
        changed = dataclasses.replace(BASE, **{name: value})
        assert generation_key("fake", "a", changed, 0) != base_key, name
        before = len(inner.calls)
        cached.generate(["a"], changed)
        assert len(inner.calls) == before + 1, f"changing {name} did not miss the cache"
    assert cached.misses == 1 + len(CHANGED)


def test_key_parts_identity_prompt_and_number_normalisation():
    k = generation_key("m", "p", BASE, 0)
    assert generation_key("m2", "p", BASE, 0) != k
    assert generation_key("m", "p ", BASE, 0) != k
    assert generation_key("m", "p", BASE, 1) != k
    assert generation_key("m", "p", GenParams(temperature=0), 0) == generation_key(
        "m", "p", GenParams(temperature=0.0), 0
    )
    assert loglikelihood_key("m", "p", "c") != loglikelihood_key("m", "p", "d")
    assert loglikelihood_key("m", "p", "c") != loglikelihood_key("m2", "p", "c")
    assert loglikelihood_key("m", "pc", "") != loglikelihood_key("m", "p", "c")


def test_identity_separates_models(tmp_path):
    _, a = make(tmp_path, identity="model-a")
    a.generate(["q"], BASE)
    inner_b = ScriptedGenerator(echo, identity="model-b")
    b = CachedGenerator(inner_b, a.cache)
    b.generate(["q"], BASE)
    assert len(inner_b.calls) == 1 and b.misses == 1


def test_sample_index_separation(tmp_path):
    params = dataclasses.replace(BASE, n=3)
    inner, cached = make(tmp_path)
    out = cached.generate(["a", "b"], params)
    assert [s.text for s in out[0].samples] == [f"a t=0.5 s=0 i={i}" for i in range(3)]
    assert cached.cache.counts()["generations"] == 6  # one row per sample
    again = cached.generate(["a", "b"], params)
    assert [s.text for s in again[1].samples] == [f"b t=0.5 s=0 i={i}" for i in range(3)]
    assert len(inner.calls) == 1


def test_only_missing_prompts_in_one_batched_call_and_order(tmp_path):
    inner, cached = make(tmp_path)
    cached.generate(["p1", "p3"], BASE)
    prompts = ["p0", "p1", "p2", "p3", ChatPrompt("q", "p4"), "p2"]
    out = cached.generate(prompts, BASE)
    assert len(inner.calls) == 2
    sent, params = inner.calls[1]
    assert sent == ["p0", "p2", "USER: q\nASSISTANT: p4"]  # missing ones only, once each, in order
    assert params == BASE
    assert [g.prompt for g in out] == ["p0", "p1", "p2", "p3", "USER: q\nASSISTANT: p4", "p2"]
    assert [g.text.split()[0] for g in out] == ["p0", "p1", "p2", "p3", "p4", "p2"]
    assert (cached.hits, cached.misses) == (3, 5)


def test_inner_returning_wrong_count_is_an_error(tmp_path):
    class Broken(ScriptedGenerator):
        def generate(self, prompts, params):
            return super().generate(prompts, params)[:-1]

    cached = CachedGenerator(Broken(echo), ResponseCache(tmp_path / "c.sqlite"))
    with pytest.raises(RuntimeError, match="2 prompts"):
        cached.generate(["a", "b"], BASE)
    assert cached.cache.counts()["generations"] == 0


def test_loglikelihood_caching(tmp_path):
    inner, cached = make(tmp_path, loglik=lambda p, c: -float(len(p) + len(c)))
    reqs = [("ab", "c"), (ChatPrompt("q"), " yes"), ("ab", "cd")]
    first = cached.loglikelihood(reqs)
    assert first == [-3.0, -(len("USER: q\nASSISTANT: ") + 4.0), -4.0]
    assert (cached.ll_hits, cached.ll_misses) == (0, 3)
    out = cached.loglikelihood([("x", "y"), ("ab", "cd"), ("x", "y"), ("ab", "c")])
    assert out == [-2.0, -4.0, -2.0, -3.0]
    assert inner.loglik_calls[1] == [("x", "y")]  # only the missing request, once, in one call
    assert len(inner.loglik_calls) == 2
    assert (cached.ll_hits, cached.ll_misses) == (3, 4)
    assert cached.cache.counts()["loglikelihoods"] == 4


def test_loglikelihood_not_implemented_passes_through(tmp_path):
    _, cached = make(tmp_path)
    with pytest.raises(NotImplementedError):
        cached.loglikelihood([("a", "b")])


def test_scripted_generator_limits_and_exhaustion():
    gen = ScriptedGenerator(["alpha beta STOP gamma", "one two three four", "x"])
    p = GenParams(stop=("STOP", "beta"), max_tokens=3)
    out = gen.generate(["q", "r"], p)
    assert out[0].samples[0].text == "alpha " and out[0].samples[0].finish_reason == "stop"
    assert out[1].samples[0].text == "one two three" and out[1].samples[0].finish_reason == "length"
    assert len(out[1].samples[0].token_ids) == 3
    assert gen.remaining == 1
    with pytest.raises(ScriptExhausted, match="ran out"):
        gen.generate(["s", "t"], GenParams())


# ------------------------------------------------------------------------------ two processes


def _writer(path: str, worker: int, rounds: int, barrier) -> None:
    cached = CachedGenerator(ScriptedGenerator(echo, loglik=lambda p, c: -1.5), ResponseCache(path))
    barrier.wait()
    for r in range(rounds):
        # each round: 5 prompts of its own and 5 shared with the other process
        prompts = [f"w{worker}-r{r}-{i}" for i in range(5)] + [f"shared-r{r}-{i}" for i in range(5)]
        cached.generate(prompts, BASE)
        cached.loglikelihood([(p, " x") for p in prompts])


def test_two_processes_share_one_cache(tmp_path):
    path = str(tmp_path / "shared" / "cache.sqlite")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, 20, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = ResponseCache(path)
    assert cache.counts() == {"generations": 2 * 20 * 5 + 20 * 5, "loglikelihoods": 2 * 20 * 5 + 20 * 5}
    inner = ScriptedGenerator([])  # any call to it would raise: everything must be served from the file
    cached = CachedGenerator(inner, cache)
    out = cached.generate([f"w1-r19-{i}" for i in range(5)] + ["shared-r7-3"], BASE)
    assert [g.text for g in out][-1] == "shared-r7-3 t=0.5 s=0 i=0"
    assert cached.loglikelihood([("w0-r3-2", " x")]) == [-1.5]
    assert inner.calls == [] and cached.misses == 0
