"""Hugging Face transformers backend: batched generation with left padding, and log-likelihoods.

It also exposes the loaded `model` and `tokenizer`, which the gradient code (GReaTer) uses directly, so one
process loads the weights once.

Device: the model is moved once, at load, to `device` (`resolve_device`: by default the fastest device torch
sees, cuda, else mps, else cpu); every tensor this backend and harness.greater.gradients create is placed on the
model's device, and results come back as Python numbers and lists.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Sequence
from typing import Any

from harness.backends import device_tag
from harness.backends.codec import PromptCodec, render_prompt
from harness.core.types import BenchError, Generation, GenParams, Prompt, Sample

__all__ = ["HFGenerator", "render_prompt", "resolve_device"]

DTYPES = ("float32", "bfloat16", "float16")
DEVICE_TYPES = ("cuda", "mps", "cpu")


def resolve_device(device: str | None = None) -> str:
    """The torch device the HF backend runs on.

    None picks the fastest device torch sees: "cuda" when a CUDA GPU is available (what users of a GPU
    machine expect), else "mps" (Apple silicon) when available, else "cpu". An explicit device ("cpu", "cuda",
    "cuda:1", "mps") is checked, so a missing GPU fails here with one line instead of deep inside torch.
    """
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if device is None:
        return "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise BenchError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU; use --device cpu")
    if dev.type == "mps" and not mps_ok:
        raise BenchError(f"device {device!r}: torch {torch.__version__} sees no Apple MPS device; use --device cpu")
    return str(dev)


class HFGenerator:
    """`Generator` over a transformers causal LM. Loads the model once, in the constructor."""

    backend = "hf"

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "float32",
        threads: int | None = None,
        batch_size: int = 8,
        revision: str | None = None,
        model_obj: Any = None,
        tokenizer: Any = None,
        device: str | None = None,
    ) -> None:
        """`device`: where the model runs (`resolve_device`; None: cuda, else mps, else cpu). A `model_obj`
        stays on the device it is on unless `device` is given."""
        import torch

        if dtype not in DTYPES:
            raise BenchError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        if threads:
            torch.set_num_threads(threads)
        self.name = model
        self.dtype = dtype
        self.batch_size = batch_size
        if model_obj is not None:  # an already-built model (tests build tiny random ones)
            self.model, self.tokenizer = model_obj, tokenizer
            if device is not None:
                self.model.to(resolve_device(device))
            self.revision = revision or "in-memory"
            use_template = None
        else:
            from harness.backends.models import resolve_model

            resolved = resolve_model(model, revision)
            self.revision = resolved.revision
            use_template = resolved.chat_template
            self.model, self.tokenizer = _load(resolved.path, resolved.revision, dtype, resolve_device(device))
        self.device = str(self.model.device)  # recorded in spec.json; in the identity (cache keys) unless cpu
        self.model.eval()
        self.model.requires_grad_(False)
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        self.codec = PromptCodec(tok, use_template)
        self.use_chat_template = self.codec.use_chat_template

    def close(self) -> None:
        """Free the weights (the pool calls this when a model's last cell is done)."""
        self.model = None
        gc.collect()

    # ------------------------------------------------------------------ Generator protocol
    @property
    def identity(self) -> str:
        return f"hf:{self.name}@{self.revision}:{self.dtype}{device_tag(self.device)}"

    def render(self, prompt: Prompt) -> str:
        return self.codec.render(prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered text (the chat template already holds any special tokens)."""
        return self.codec.encode(text)

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        texts = [self.render(p) for p in prompts]
        ids = [self.encode(t) for t in texts]
        # Longest first, in batches of similar length: less padding, same results.
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        out: list[Generation | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            samples = self._generate_batch([ids[i] for i in chunk], [texts[i] for i in chunk], params)
            for i, s in zip(chunk, samples):
                out[i] = Generation(prompt=texts[i], prompt_tokens=len(ids[i]), samples=tuple(s))
        return out  # type: ignore[return-value]

    def _generate_batch(self, batch_ids: list[list[int]], texts: list[str], params: GenParams) -> list[list[Sample]]:
        import torch

        tok = self.tokenizer
        width = max(len(x) for x in batch_ids)
        pad = tok.pad_token_id
        dev = self.model.device
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch_ids], device=dev)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch_ids], device=dev)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_tokens,
            num_return_sequences=params.n,
            pad_token_id=pad,
            do_sample=not params.greedy,
        )
        if params.greedy:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        # the CPU generator always, and the model's accelerator's if it has one
        rng = {"devices": []} if dev.type == "cpu" else {"devices": [dev.index or 0], "device_type": dev.type}
        with torch.no_grad(), torch.random.fork_rng(**rng):
            # Sampling draws from a seed derived from the request, never from global state.
            digest = hashlib.sha256(f"{params.seed}|{'|'.join(texts)}".encode()).digest()
            torch.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
            seqs = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        new = seqs[:, width:].tolist()
        eos = set(_as_list(self.model.generation_config.eos_token_id)) | {tok.eos_token_id}
        result: list[list[Sample]] = []
        for row in range(len(batch_ids)):
            samples = []
            for j in range(params.n):
                samples.append(self._finish(new[row * params.n + j], eos, params))
            result.append(samples)
        return result

    def _finish(self, ids: list[int], eos: set[int], params: GenParams) -> Sample:
        reason = "length"
        for k, t in enumerate(ids):
            if t in eos:
                ids, reason = ids[:k], "stop"
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in params.stop if s in text), default=-1)
        if cut >= 0:
            text, reason = text[:cut], "stop"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Sample(text=text, token_ids=tuple(ids), finish_reason=reason)

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]]) -> list[float]:
        """Sum of log p(continuation | prompt), as lm-eval scores multiple choice.

        Requests are split into context and continuation as lm-eval does (`PromptCodec.loglikelihood_split`).
        Requests whose continuations are all one token share one forward pass of their context.
        """
        import torch

        pairs = self.codec.loglikelihood_split(requests)
        ctx_ids = {c: self.encode(c) for c in {p[0] for p in pairs}}
        cont_ids = [self.codec.continuation(c) for _, c in pairs]
        result = [0.0] * len(pairs)
        seqs: list[tuple[list[int], list[tuple[int, list[int]]]]] = []  # (ids, [(request, cont ids)])
        by_ctx: dict[str, list[int]] = {}
        for i, (c, _) in enumerate(pairs):
            by_ctx.setdefault(c, []).append(i)
        for c, members in by_ctx.items():
            singles = [i for i in members if len(cont_ids[i]) == 1]
            if singles:
                seqs.append((ctx_ids[c], [(i, cont_ids[i]) for i in singles]))
            for i in members:
                if len(cont_ids[i]) != 1:
                    seqs.append((ctx_ids[c] + cont_ids[i][:-1], [(i, cont_ids[i])]))
        seqs.sort(key=lambda s: -len(s[0]))
        for start in range(0, len(seqs), self.batch_size):
            chunk = seqs[start : start + self.batch_size]
            keep = max(max(len(ci) for _, ci in s[1]) for s in chunk)
            width = max(len(s[0]) for s in chunk)
            pad = self.tokenizer.pad_token_id
            dev = self.model.device
            input_ids = torch.tensor([[pad] * (width - len(s[0])) + s[0] for s in chunk], device=dev)
            mask = torch.tensor([[0] * (width - len(s[0])) + [1] * len(s[0]) for s in chunk], device=dev)
            with torch.no_grad():
                logits = self.model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for row, (_, members) in enumerate(chunk):
                for i, ci in members:
                    # the last len(ci) kept positions predict the continuation tokens
                    pos = logp[row, keep - len(ci) :, :]
                    result[i] = float(pos.gather(1, torch.tensor(ci, device=dev)[:, None]).sum())
        return result


    def next_token_logprobs(self, prompts: Sequence[Sequence[int]], token_ids: Sequence[Sequence[int]]) -> list[tuple[list[float], int]]:
        """For each prompt (token ids), the log-probabilities of `token_ids` as its next token, and the greedy
        next token: one left-padded forward per batch, the last position's logits only."""
        import torch

        out: list[tuple[list[float], int] | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        pad, dev = self.tokenizer.pad_token_id, self.model.device
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.tensor([[pad] * (width - len(prompts[i])) + list(prompts[i]) for i in chunk], device=dev)
            mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chunk], device=dev)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1]
            logp = torch.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(chunk):
                out[i] = (logp[row, list(token_ids[i])].tolist(), int(logp[row].argmax()))
        return out  # type: ignore[return-value]

def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _load(path: str, revision: str, dtype: str, device: str) -> tuple[Any, Any]:
    """Load the weights and tokenizer (the caller, `harness.runner.pool.ModelPool`, keeps them: backends do not cache)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {} if revision in ("", None) or "/" not in path or path.startswith("/") else {"revision": revision}
    try:
        tok = AutoTokenizer.from_pretrained(path, **kw)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kw)
    except OSError as e:
        raise BenchError(
            f"cannot load model {path!r} ({str(e).splitlines()[0][:120]}): pass a local folder, a packaged "
            "alias (`bench models`), or a hub id on a machine with hub access"
        ) from None
    return model.to(device), tok
