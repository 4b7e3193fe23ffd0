"""GReaTer's settings: the config (the paper's defaults), its presets, and the readings a run resolves them to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.types import BenchError, PromptPosition, Task

if TYPE_CHECKING:
    from harness.core.context import OptimizeContext

MISTAKE_READINGS = ("greedy", "options", "run")
RESCORERS = ("gradient_model", "task_model")
LOSSES = ("full", "options")
TIE_BREAKS = ("fluency", "loss")


@dataclass(frozen=True, kw_only=True)
class GreaterConfig:
    """Defaults are the paper's (GPU scale); see PRESETS for the CPU and smoke sizes."""

    fixed_prefix: str = "Use"  # every published GReaTer prompt starts with it; never optimized
    initial_prompt: str = "proper logical reasoning and think step by step. Finally give the actual correct answer."
    n_train: int = 50  # training examples (the first N of the train split)
    steps: int = 125
    train_reasoning_tokens: int = 1024  # reasoning length while optimizing (the run's dev/test length: its preset)
    top_k: int = 10  # per-example top-k of the proposal distribution (scripts: 40; logs: ~5-15)
    intersections: int = 3  # q: intersections whose union is the candidate set
    per_intersection: int = 5  # examples drawn at random per intersection
    min_candidates: int = 6  # grow k until the candidate set has at least this many tokens
    k_growth: int = 2
    rescore_top: int = 3  # candidates (best by gradient) whose reasoning is regenerated
    answer_temperature: float = 0.2  # the answer CE is taken on logits / 0.2
    fluency_weight: float = 0.2  # x prompt NLL, in the gradient's loss
    select_fluency_weight: float = 0.02  # x prompt NLL, in the re-scoring selection score
    keep: int = 10  # best prompts by training score, compared on dev at the end
    dev_limit: int | None = None  # dev examples for the final choice (None: the whole dev split)
    early_accept: bool = True  # second half of the prompt: a top candidate containing "." wins at once
    max_prompt_tokens: int = 64  # at the end of a prompt this long, wrap instead of growing
    placeholder: str = "."  # appended when the prompt grows; the next step replaces it
    round_trip: bool = True  # drop candidates whose prompt text does not re-tokenize to the same ids
    mistake: str = "greedy"  # greedy (paper: full-vocabulary argmax) | options (allowed answers) | run
    loss: str = "full"  # full (paper: CE over the vocabulary) | options (CE over the allowed answers)
    tie_break: str = "fluency"  # fluency (paper: mistake + 0.02 NLL) | loss (mistake first, then CE + 0.02 NLL)
    grad_micro_batch: int = 4  # sequences per forward+backward chunk (memory bound; gradients accumulate)
    prefix_cache: bool = True  # re-scoring continues the shared question + prompt[:cursor] KV cache
    # re-scoring's answers: a forward of every whole sequence on the gradient model, or (options loss and
    # mistakes only) the task model's next-token log-probabilities after each generation (vLLM: from its
    # prefix cache, only the extractor's tokens are new) plus a forward of the prompt alone for the fluency
    rescore_with: str = "gradient_model"

    def __post_init__(self) -> None:
        for name in ("n_train", "steps", "train_reasoning_tokens", "top_k", "intersections", "per_intersection",
                     "min_candidates", "rescore_top", "keep", "max_prompt_tokens", "grad_micro_batch"):
            if getattr(self, name) < 1:
                raise BenchError(f"greater: {name} must be at least 1")
        if self.k_growth < 1:
            raise BenchError("greater: k_growth must be at least 1")
        if self.answer_temperature <= 0:
            raise BenchError("greater: answer_temperature must be > 0")
        if self.dev_limit is not None and self.dev_limit < 1:
            raise BenchError("greater: dev_limit must be at least 1 (or None)")
        for name, allowed in (("mistake", MISTAKE_READINGS), ("loss", LOSSES), ("tie_break", TIE_BREAKS),
                              ("rescore_with", RESCORERS)):
            if getattr(self, name) not in allowed:
                raise BenchError(f"greater: {name}={getattr(self, name)!r}; use one of {', '.join(allowed)}")
        if not self.initial_prompt.strip():
            raise BenchError("greater: initial_prompt must not be empty")


PRESETS: dict[str, dict[str, Any]] = {
    # The paper: Llama-3-8B / Gemma-2-9B on a GPU, 5-6 h per task.
    "paper": {},
    # One BBH task on 2 CPU cores with smollm2-135m in about 15 minutes, dev selection and test included.
    # Position: measured mean reasoning length of smollm2-135m on navigate (train rows 0-11, greedy, 128 new
    # tokens) with this initial prompt: `after` (the paper's layout) 1.0 token (it answers Yes/No at once),
    # `before` 45.4, `assistant` 0.0 (the prompt reads as a complete answer: end of turn). Only `before`
    # gives the gradient reasoning to flow through: the `cpu` run preset puts every prompt there (harness.core.spec).
    # Small-model variants (issue 3): mistakes read and loss taken over the allowed answers only
    # (`run` resolves to the run's reading: options for closed answer sets), ties in the mistake rate
    # broken by the continuous loss.
    # Size: a step costs ~3N generations; see docs/greater.md for the measured times.
    "cpu": {
        "n_train": 12, "steps": 12, "train_reasoning_tokens": 96, "top_k": 10, "keep": 3, "dev_limit": 30,
        "mistake": "run", "loss": "options", "tie_break": "loss",
    },
    # Seconds on the tiny random model (tests).
    "smoke": {
        "n_train": 4, "steps": 2, "train_reasoning_tokens": 16, "top_k": 8, "keep": 2, "dev_limit": 4,
        "per_intersection": 2, "initial_prompt": "think step by step.",
    },
}


def config_for(preset: str = "cpu", **overrides: Any) -> GreaterConfig:
    from harness.core.config import configure

    presets = {name: GreaterConfig(**values) for name, values in PRESETS.items()}
    return configure("greater", presets, preset, overrides)


@dataclass(frozen=True)
class Variants:
    """The config's readings as resolved for one task and backend (reported in the result's meta)."""

    mistake: str
    loss: str
    tie_break: str
    position: str  # where the prompt sits in the chat (`PromptPosition`)
    prefix_cache: bool
    rescore_with: str
    notes: list[str]


def resolve_variants(cfg: GreaterConfig, task: Task, ctx: OptimizeContext, position: PromptPosition) -> Variants:
    """The config's readings for this task and backend: `run` becomes the run's reading; open answer formats
    and backends without next-token log-probabilities fall back, with a note."""
    mistake = cfg.mistake
    if mistake == "run":
        reading = ctx.primary_reading or ("options" if task.answer_format.closed else "greedy")
        mistake = "options" if reading == "options" else "greedy"
    notes = []
    if mistake == "options" and not task.answer_format.closed:
        mistake = "greedy"
        notes.append("open answer format: mistakes read greedily")
    loss = cfg.loss
    if loss == "options" and not task.answer_format.closed:
        loss = "full"
        notes.append("open answer format: full-vocabulary answer loss")
    rescore_with = cfg.rescore_with
    if rescore_with == "task_model":
        if (mistake, loss) != ("options", "options"):
            rescore_with = "gradient_model"
            notes.append("re-scoring by the gradient model: the task model's answer log-probabilities serve the "
                         "options loss and mistakes only")
        elif not hasattr(ctx.task_model, "next_token_logprobs"):
            rescore_with = "gradient_model"
            notes.append("re-scoring by the gradient model: the task model's backend gives no next-token log-probabilities")
    return Variants(mistake=mistake, loss=loss, tie_break=cfg.tie_break, position=position.value,
                    prefix_cache=cfg.prefix_cache, rescore_with=rescore_with, notes=notes)
