"""Core types of greater-bench: read this module first.

Three layers are kept apart (as in DSPy): *what* is evaluated (`Task`, `Example`), *how* text is produced
(`Generator` backends, `GenParams` with vLLM's names) and *tuning* (`OptimizeResult`, `PromptCandidate`, `Needs`;
the `Optimizer` protocol lives beside what it is handed, in `harness.core.context`). Nothing here imports torch
or touches files; heavy imports live inside the backends.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

SCHEMA_VERSION = 1


class BenchError(Exception):
    """An error the user can fix; the CLI prints it as one line (no traceback) and exits non-zero."""


# --------------------------------------------------------------------------------------------- tasks


class AnswerFormat(str, enum.Enum):
    LETTER = "letter"  # "(C)" -> "C"; options are the letters the example lists
    YES_NO = "yes_no"
    TRUE_FALSE = "true_false"
    VALID_INVALID = "valid_invalid"
    INTEGER = "integer"
    FREE_TEXT = "free_text"

    @property
    def closed(self) -> bool:
        """True when the answer is one of a small fixed set (read by likelihood with `options`)."""
        return self not in (AnswerFormat.INTEGER, AnswerFormat.FREE_TEXT)


@dataclass(frozen=True, kw_only=True)
class Example:
    id: str
    input: str  # the question exactly as the model sees it
    target: str  # the normalised gold answer ("C", "Yes", "-12", "a b c")
    meta: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"options": ("A", "B"), "row": 17}


class PromptPosition(str, enum.Enum):
    """Where the instruction goes; a run option shared by every method."""

    AFTER = "after"  # user turn: question + " " + instruction (the GReaTer paper's layout)
    BEFORE = "before"  # user turn: instruction + "\n\n" + question
    ASSISTANT = "assistant"  # user turn: question; the assistant turn starts with the instruction (OPRO's A_begin)


@dataclass(frozen=True, kw_only=True)
class Task:
    """A benchmark task: where its rows come from, how the answer is asked for, read and scored.

    `extract`, `extract_fallback` and `score` are pure functions; `load` returns the task's splits.
    """

    name: str  # "bbh:navigate", "gsm8k", "folio", "custom:mytask"
    answer_format: AnswerFormat
    options: tuple[str, ...]  # the closed answer set in gold spelling, () for open formats
    extractor: Callable[[Example], str]  # the text appended after the reasoning ("... is $")
    extract: Callable[[str, Example], str | None]  # answer from the continuation after the extractor
    extract_fallback: Callable[[str, Example], str | None]  # last allowed answer in the reasoning text
    score: Callable[[str | None, str], bool]  # exact match of a normalised prediction with the gold
    load: Callable[..., Splits]  # load(data_dir=None, seed=None) -> Splits
    description: str = ""
    answer_max_tokens: int = 8  # greedy reading: how long the continuation after the extractor may be
    answer_stop: tuple[str, ...] = ("\n",)  # greedy reading: where the continuation after the extractor stops
    # What else decides how answers are read when it is not the format's default (a custom task's sidecar):
    # part of the data fingerprint, so editing a sidecar is a new run, never an old result. "" for built-in tasks.
    reading_key: str = ""

    def options_for(self, example: Example) -> tuple[str, ...]:
        """The allowed answers of one example (letters differ per example), () for open formats."""
        return tuple(example.meta.get("options", self.options))


@dataclass(frozen=True, kw_only=True)
class Splits:
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]
    rule: str  # how the rows were cut, in words (recorded with every run)

    def get(self, name: str) -> tuple[Example, ...]:
        if name not in ("train", "dev", "test"):
            raise BenchError(f"unknown split {name!r}: use train, dev or test")
        return getattr(self, name)


# ---------------------------------------------------------------------------------------- generation


@dataclass(frozen=True, kw_only=True)
class GenParams:
    """Sampling parameters with vLLM's names. temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0
    n: int = 1

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("n > 1 needs temperature > 0 (greedy samples are identical)")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class ChatPrompt:
    """One user turn, optionally with the start of the assistant's answer already written.

    Backends render it with the model's chat template (or a plain "Question: ... Answer:" layout for
    models without one) and continue after `assistant_prefix`. A plain `str` prompt is sent as is.
    """

    user: str
    assistant_prefix: str = ""

    def continued(self, text: str) -> ChatPrompt:
        return ChatPrompt(self.user, self.assistant_prefix + text)


Prompt = ChatPrompt | str


@dataclass(frozen=True)
class Sample:
    text: str
    token_ids: tuple[int, ...]  # empty for API backends, which report only counts
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    completion_tokens: int | None = None  # a server's count when token ids are unknown

    @property
    def num_tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else len(self.token_ids)


@dataclass(frozen=True)
class Generation:
    """What one prompt produced: the rendered prompt and its n samples (vLLM's RequestOutput)."""

    prompt: str  # the exact rendered text the model saw
    prompt_tokens: int
    samples: tuple[Sample, ...]

    @property
    def text(self) -> str:
        return self.samples[0].text


@runtime_checkable
class CountsCacheHits(Protocol):
    """A generator that answers some prompts from a cache and counts them (`harness.backends.cache`)."""

    hits: int


@runtime_checkable
class Generator(Protocol):
    """A text generation backend (HF, vLLM, OpenAI-compatible, scripted fake)."""

    @property
    def identity(self) -> str:
        """Model identity incl. revision and dtype, and the backend: the cache key's first part."""
        ...

    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees for `prompt` (chat template applied)."""
        ...

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        """One Generation per prompt, in input order."""
        ...

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]]) -> list[float]:
        """Sum of log-probabilities of each continuation given its prompt (lm-eval's loglikelihood).

        Backends that cannot score raise `NotImplementedError`; the `options` reading is then skipped.
        """
        ...


# ---------------------------------------------------------------------------------------- costs


@dataclass(kw_only=True)
class Cost:
    """The one cost meter every method reports. Mutable: a run adds to it as it goes."""

    task_calls: int = 0  # prompts sent to the task model
    task_tokens_in: int = 0
    task_tokens_out: int = 0
    optimizer_calls: int = 0  # prompts sent to the optimizer LLM
    optimizer_tokens_in: int = 0
    optimizer_tokens_out: int = 0
    forward_passes: int = 0  # gradient-model forward passes (batched passes count once per sequence)
    backward_passes: int = 0
    unparseable: int = 0  # LLM-proposer outputs that could not be parsed
    cached_calls: int = 0  # prompts (of either model) answered by the response cache instead of the model
    wall_seconds: float = 0.0

    def add(self, other: Cost) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Limits shared by every optimizer; None means no limit. Checked with `exhausted(cost)`."""

    task_tokens: int | None = None  # task-model tokens in + out
    optimizer_calls: int | None = None
    wall_seconds: float | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit is set: methods whose published setting counts rounds then run rounds until the
        budget is used (a common budget compares methods at equal cost, not at their own step counts)."""
        return self.task_tokens is not None or self.optimizer_calls is not None or self.wall_seconds is not None

    def exhausted(self, cost: Cost) -> bool:
        if self.task_tokens is not None and cost.task_tokens_in + cost.task_tokens_out >= self.task_tokens:
            return True
        if self.optimizer_calls is not None and cost.optimizer_calls >= self.optimizer_calls:
            return True
        return self.wall_seconds is not None and cost.wall_seconds >= self.wall_seconds


# ---------------------------------------------------------------------------------------- optimizers


@dataclass(frozen=True, kw_only=True)
class PromptCandidate:
    text: str
    score: float | None = None  # the method's own selection score (higher is better)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class OptimizeResult:
    best: PromptCandidate
    candidates: tuple[PromptCandidate, ...] = ()  # what the method kept (e.g. GReaTer's top 10)
    cost: Cost = field(default_factory=Cost)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Needs:
    """What an optimizer needs from the runner beyond the task model, declared on its class.

    `gradients`: an HF model in this process (`GradientModel`, e.g. GReaTer); `optimizer_llm`: an LLM that
    writes prompts (text-based methods; the task model unless the run names another)."""

    gradients: bool = False
    optimizer_llm: bool = False


@runtime_checkable
class GradientModel(Protocol):
    """What a gradient-based method needs from a Hugging Face model (`HFGenerator` is one).

    `model` is a transformers causal LM (forward with `inputs_embeds`, `past_key_values` for continuing a KV
    cache, `get_input_embeddings()`); `tokenizer` its tokenizer; `render` and `encode` give the exact text and
    ids the decoding backend sees, so gradients are taken on the same sequences."""

    model: Any
    tokenizer: Any

    @property
    def identity(self) -> str: ...

    def render(self, prompt: Prompt) -> str: ...

    def encode(self, text: str) -> list[int]: ...


READINGS = ("greedy", "options", "fallback")

# The zero-shot chain-of-thought instruction (Kojima et al.): the reference every run is compared with.
ZERO_SHOT_COT = "Let's think step by step."
