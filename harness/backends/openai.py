"""A `Generator` for OpenAI-compatible servers (vLLM's `vllm serve`, llama.cpp's server, OpenAI itself).

Uses the official `openai` client (imported on first use), whose retries with exponential backoff cover
connection errors, timeouts, 408/409/429 and 5xx answers (`max_retries`). The prompts of a batch are sent
concurrently, at most `max_concurrency` at a time; results come back in input order.

Modes:

* `chat` (default): a `ChatPrompt` is sent to /chat/completions as one user message; when it has an
  `assistant_prefix`, a final assistant message holding the prefix is added with
  `extra_body={"continue_final_message": True, "add_generation_prompt": False}` (vLLM's server continues
  that message) and only the continuation is returned. The server applies the chat template, so the text
  the model sees is unknown here: `render` returns the JSON of the messages sent (exact and unambiguous,
  which is what the cache key needs).
* `completions`: a `ChatPrompt` is rendered as "Question: {user}\\nAnswer: {assistant_prefix}" and sent
  to /completions.

A plain `str` prompt is sent as is to /completions in both modes.

Token ids: the server reports only counts, so `Sample.token_ids` is always `()` for this backend;
`Generation.prompt_tokens` is the server's `usage.prompt_tokens` (0 when it gives no usage).

API key: read from the environment variable `api_key_env`; when it is unset, "EMPTY" is sent (what local
servers such as vLLM accept when started without `--api-key`).

`loglikelihood` asks /completions for prompt + continuation with `echo=True, logprobs=1, max_tokens=0`
(vLLM and OpenAI's legacy completions) and sums the log-probabilities of the echoed tokens that overlap the
continuation's characters (found by `text_offset`). A server that refuses raises NotImplementedError. In
chat mode a `ChatPrompt` cannot be scored (its templated text is unknown): NotImplementedError as well;
use `mode="completions"` for the likelihood reading.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from harness.core.env import env_secret
from harness.core.types import BenchError, ChatPrompt, Generation, GenParams, Prompt, Sample

MODES = ("chat", "completions")
CONTINUE_FINAL = {"continue_final_message": True, "add_generation_prompt": False}
_REFUSED = (400, 404, 405, 422, 501)  # answers that mean "this server cannot echo prompt logprobs"

T = TypeVar("T")
R = TypeVar("R")


class OpenAIGenerator:
    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        mode: str = "chat",
        max_concurrency: int = 8,
        max_retries: int = 3,
        timeout: float = 120.0,
    ) -> None:
        if mode not in MODES:
            raise BenchError(f"unknown OpenAI backend mode {mode!r}: use chat or completions")
        if max_concurrency < 1:
            raise BenchError("max_concurrency must be at least 1")
        if max_retries < 0:
            raise BenchError("max_retries must be at least 0")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        env_secret(api_key_env)  # a malformed key fails here, in one line, not in the HTTP client
        self.mode = mode
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- basics

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url}:{self.model}"

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if not isinstance(prompt, ChatPrompt):
            raise TypeError(f"a prompt is a ChatPrompt or a str, not {type(prompt).__name__}")
        if self.mode == "completions":
            return f"Question: {prompt.user}\nAnswer: {prompt.assistant_prefix}"
        return json.dumps(_messages(prompt), ensure_ascii=False)

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import openai

                api_key = env_secret(self.api_key_env) or "EMPTY"
                self._client = openai.OpenAI(
                    api_key=api_key,
                    base_url=self.base_url,
                    max_retries=self.max_retries,
                    timeout=self.timeout,
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -------------------------------------------------------------------------------------- generation

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        self.client  # noqa: B018 (build the client once, before the worker threads)
        return self._pool(lambda p: self._generate_one(p, params), list(prompts))

    def _generate_one(self, prompt: Prompt, params: GenParams) -> Generation:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
            "n": params.n,
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)
        rendered = self.render(prompt)
        if isinstance(prompt, ChatPrompt) and self.mode == "chat":
            if prompt.assistant_prefix:
                kwargs["extra_body"] = dict(CONTINUE_FINAL)
            messages = _messages(prompt)
            resp = self._call(lambda: self.client.chat.completions.create(messages=messages, **kwargs))
            texts = [(c.index, c.message.content or "", c.finish_reason) for c in resp.choices]
        else:
            resp = self._call(lambda: self.client.completions.create(prompt=rendered, **kwargs))
            texts = [(c.index, c.text or "", c.finish_reason) for c in resp.choices]
        texts.sort(key=lambda t: t[0])
        if len(texts) != params.n:
            raise BenchError(f"{self.base_url} returned {len(texts)} choices, n={params.n} were asked for")
        usage = getattr(resp, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        # the server counts all n samples together; share the count out (remainder to the first ones)
        total = int(getattr(usage, "completion_tokens", 0) or 0)
        per = [total // params.n + (1 if i < total % params.n else 0) for i in range(params.n)]
        samples = tuple(Sample(text, (), _finish(reason), per[i]) for i, (_, text, reason) in enumerate(texts))
        return Generation(prompt=rendered, prompt_tokens=prompt_tokens, samples=samples)

    # ---------------------------------------------------------------------------------- loglikelihood

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]]) -> list[float]:
        pairs = []
        for prompt, continuation in requests:
            if isinstance(prompt, ChatPrompt) and self.mode == "chat":
                raise NotImplementedError(
                    "the OpenAI backend in chat mode cannot score continuations (the server applies the chat "
                    "template, so the prompt text is unknown); use mode='completions'"
                )
            pairs.append((self.render(prompt), continuation))
        self.client  # noqa: B018
        return self._pool(lambda pair: self._score(*pair), pairs)

    def _score(self, context: str, continuation: str) -> float:
        if not continuation:
            return 0.0
        import openai

        try:
            resp = self.client.completions.create(
                model=self.model,
                prompt=context + continuation,
                echo=True,
                logprobs=1,
                max_tokens=0,
                temperature=0.0,
            )
        except openai.APIStatusError as e:
            if e.status_code in _REFUSED:
                why = f"HTTP {e.status_code}: {_one_line(e.message)}"
                raise NotImplementedError(self._refused(why)) from None
            raise self._error(e) from None
        except openai.APIError as e:
            raise self._error(e) from None
        logprobs = resp.choices[0].logprobs if resp.choices else None
        offsets = getattr(logprobs, "text_offset", None)
        token_lps = getattr(logprobs, "token_logprobs", None)
        tokens = getattr(logprobs, "tokens", None)
        if not offsets or not token_lps or not tokens:
            raise NotImplementedError(self._refused("the answer holds no echoed prompt logprobs"))
        start, end = len(context), len(context) + len(continuation)
        total, seen = 0.0, False
        for token, offset, lp in zip(tokens, offsets, token_lps):
            if offset < end and offset + len(token) > start:  # the token overlaps the continuation
                if lp is None:
                    raise BenchError("loglikelihood needs a non-empty prompt before the continuation")
                total += float(lp)
                seen = True
        if not seen:
            raise BenchError(f"{self.base_url} echoed token offsets that do not cover the continuation")
        return total

    def _refused(self, why: str) -> str:
        return (
            f"{self.base_url} cannot score continuations ({why}); likelihood scoring needs /v1/completions "
            "with echo=True, logprobs=1, max_tokens=0, e.g. a vLLM server"
        )

    # ------------------------------------------------------------------------------------------ plumbing

    def _pool(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
            return list(pool.map(fn, items))  # map keeps input order

    def _call(self, fn: Callable[[], R]) -> R:
        import openai

        try:
            return fn()
        except openai.APIError as e:
            raise self._error(e) from None

    def _error(self, e: Exception) -> BenchError:
        import openai

        retries = f"after {self.max_retries} retries"
        if isinstance(e, openai.APITimeoutError):
            return BenchError(
                f"request to {self.base_url} timed out ({self.timeout}s, {retries}): is the server running "
                "and not overloaded? check --base-url"
            )
        if isinstance(e, openai.APIConnectionError):
            return BenchError(
                f"cannot connect to the OpenAI-compatible server at {self.base_url} ({retries}): "
                "is the server running? check --base-url"
            )
        if isinstance(e, openai.APIStatusError):
            return BenchError(
                f"{self.base_url} answered HTTP {e.status_code} for model {self.model!r}: "
                f"{_one_line(e.message)}"
            )
        return BenchError(f"request to {self.base_url} failed: {_one_line(str(e))}")


def _messages(prompt: ChatPrompt) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": prompt.user}]
    if prompt.assistant_prefix:
        messages.append({"role": "assistant", "content": prompt.assistant_prefix})
    return messages


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
