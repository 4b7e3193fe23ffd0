"""The `Optimizer` protocol and what every optimizer is handed (`OptimizeContext`): the shared cost meter, scoring,
and checkpoints; and the one progress callback type of the harness (`Progress`, handed `ProgressEvent`s).

An optimizer touches nothing but its `ctx`: the task model it scores prompts with, the optimizer LLM it
asks for new prompts, the gradient model (GReaTer), the budget and cost meter, a seeded RNG and the step
log. There are no globals: two optimizers can run side by side in one process. Scoring is the evaluation
layer's (`harness.evaluation.evaluate.score`), handed in as `scorer` so this module stays at the bottom.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.core.io import append_jsonl, read_jsonl
from harness.core.spec import NO_PRESET
from harness.core.text import prompt_tokens
from harness.core.types import (
    Budget,
    Cost,
    CountsCacheHits,
    Example,
    Generation,
    Generator,
    GenParams,
    GradientModel,
    Needs,
    OptimizeResult,
    Prompt,
    PromptPosition,
    Task,
)


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    """One progress report, all a progress callback (`Progress`) is handed: a line of text (`text`: a method's
    own message, or a line a display made of counts), or the counts of a phase of work (`phase`: `done` of
    `total` examples, `tokens` generated so far). `run` is the id of the run whose work it is, set by whoever
    runs several (the grid)."""

    text: str = ""
    phase: str = ""
    done: int = 0
    total: int = 0
    tokens: int = 0
    run: str = ""

    @property
    def counts(self) -> bool:
        return not self.text


Progress = Callable[[ProgressEvent], None]  # every progress callback: evaluate, run_eval, run_optimize, run_cell, the grid


def no_progress(_event: ProgressEvent) -> None:
    """A `Progress` that shows nothing."""


class Scorer(Protocol):
    """Accuracy of an instruction on examples under the run's decoding and answer reading: an object with
    `.accuracy`, `.summary()` and `.examples` (`harness.evaluation.evaluate.EvalResult`)."""

    def __call__(
        self, task: Task, examples: Sequence[Example], instruction: str | None, generator: Generator, *,
        position: PromptPosition, max_new_tokens: int, primary: str | None, seed: int,
    ) -> Any: ...


class MeteredGenerator:
    """A Generator that adds every call to the run's cost meter, as task- or optimizer-model usage.

    Tokens are counted whether or not the response cache answered: a cached result still stands for work
    the method asked for, so costs do not depend on what earlier runs left in the cache.
    """

    def __init__(self, inner: Generator, cost: Cost, role: str) -> None:
        if role not in ("task", "optimizer"):
            raise ValueError(role)
        self.inner, self.cost, self.role = inner, cost, role

    @property
    def identity(self) -> str:
        return self.inner.identity

    def render(self, prompt: Prompt) -> str:
        return self.inner.render(prompt)

    def _add(self, what: str, n: int) -> None:
        name = f"{self.role}_{what}"
        setattr(self.cost, name, getattr(self.cost, name) + n)

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        hits = self.inner.hits if isinstance(self.inner, CountsCacheHits) else None
        out = self.inner.generate(prompts, params)
        if hits is not None:  # replayed work: counted in the cost, but it took no model time
            self.cost.cached_calls += self.inner.hits - hits
        self._add("calls", len(prompts))
        self._add("tokens_in", sum(g.prompt_tokens for g in out))
        self._add("tokens_out", sum(s.num_tokens for g in out for s in g.samples))
        return out

    def loglikelihood(self, requests: Sequence[tuple[Prompt, str]]) -> list[float]:
        out = self.inner.loglikelihood(requests)
        self._add("calls", len(requests))
        return out

    def __getattr__(self, name: str) -> Any:  # model/tokenizer of an HF backend, for gradient code
        return getattr(self.inner, name)


@dataclass(kw_only=True)
class OptimizeContext:
    task_model: Generator  # prompts are scored with this model (metered as "task")
    optimizer_model: Generator  # LLM proposers write prompts with this one (metered as "optimizer")
    scorer: Scorer  # harness.evaluation.evaluate.evaluate: how `score` reads accuracy
    gradient_model: GradientModel | None = None  # an HF model for methods whose `needs.gradients`
    budget: Budget = field(default_factory=Budget)
    cost: Cost = field(default_factory=Cost)
    seed: int = 0
    position: PromptPosition = NO_PRESET.position  # the run's (its preset's), shared by every method
    max_new_tokens: int = NO_PRESET.max_new_tokens  # reasoning length of every score()
    primary_reading: str | None = None
    length_penalty: float = 0.0  # selection score - L x prompt tokens / 100 (`selection_score`); 0: off
    steps_path: Path | None = None  # where step records go (JSON lines); None: kept in memory only
    progress: Callable[[str], None] = lambda _msg: None
    rng: random.Random = field(init=False)
    steps: list[dict[str, Any]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._t0 = time.perf_counter()
        self._wall0 = self.cost.wall_seconds

    @classmethod
    def create(cls, *, task_model: Generator, optimizer_model: Generator | None = None, **kw: Any) -> OptimizeContext:
        """Wrap the models in the cost meter (the optimizer LLM defaults to the task model)."""
        cost = kw.pop("cost", None) or Cost()
        task = MeteredGenerator(task_model, cost, "task")
        opt = MeteredGenerator(optimizer_model or task_model, cost, "optimizer")
        return cls(task_model=task, optimizer_model=opt, cost=cost, **kw)

    # ------------------------------------------------------------------ budget and cost
    def tick(self) -> None:
        self.cost.wall_seconds = self._wall0 + (time.perf_counter() - self._t0)

    def out_of_budget(self) -> bool:
        self.tick()
        return self.budget.exhausted(self.cost)

    # ------------------------------------------------------------------ scoring
    def score(self, task: Task, examples: Sequence[Example], instruction: str | None) -> Any:
        """Accuracy of `instruction` under the run's decoding and answer reading (shared by every method):
        an `EvalResult` (`.accuracy`, `.examples`, `.summary()`)."""
        return self.scorer(
            task, examples, instruction, self.task_model, position=self.position,
            max_new_tokens=self.max_new_tokens, primary=self.primary_reading, seed=self.seed,
        )

    def selection_score(self, prompt: str | None, score: float) -> float:
        """The score a method selects prompts by: `score` (an accuracy) minus the run's length penalty, L x prompt
        tokens / 100 (`harness.core.text.prompt_tokens`). With no penalty, `score` itself."""
        if not self.length_penalty:
            return score
        return score - self.length_penalty * prompt_tokens(prompt) / 100

    # ------------------------------------------------------------------ steps and resume
    def log_step(self, record: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        """Record one finished step; `state` is what the method needs to continue from here.

        Curve keys, shared by every method and read by `harness.reports.leaderboard.curves`: `train_accuracy` and
        `dev_accuracy`, numbers in [0, 1] a step logs when it scored prompts on that split (never an extra
        model call just for the curve; what each method's number means is listed at `curves`), and
        `selection_score`: the best-so-far prompt's score as the method selects by it (`selection_score`, the length
        penalty included), the y of the anytime curves (`harness.reports.curves.anytime`; x: this row's `cost`).
        """
        self.tick()
        row = {
            "step": len(self.steps),
            **record,
            "cost": self.cost.to_dict(),
            "rng": _rng_to_json(self.rng.getstate()),
            "state": state,
        }
        self.steps.append(row)
        if self.steps_path is not None:
            append_jsonl(self.steps_path, row)

    def resume(self) -> dict[str, Any] | None:
        """Load the step log; restore RNG and cost; return the last step's state (None: start fresh)."""
        if self.steps_path is None or not self.steps_path.exists():
            return None
        self.steps = read_jsonl(self.steps_path, torn_tail_ok=True)
        if not self.steps:
            return None
        last = self.steps[-1]
        self.rng.setstate(_rng_from_json(last["rng"]))
        for k, v in last["cost"].items():
            setattr(self.cost, k, v)
        self._t0, self._wall0 = time.perf_counter(), self.cost.wall_seconds
        return last["state"]


def _rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


@runtime_checkable
class Optimizer(Protocol):
    """Every prompt optimizer: hyper-parameters in the constructor, data in the call.

    `needs` says what the runner must put into the context (`Needs`); `optimize` touches nothing but its
    context (`OptimizeContext`: models, budget, cost meter, seeded RNG, step log).
    """

    name: str
    needs: Needs

    def optimize(
        self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext
    ) -> OptimizeResult:
        ...
