"""What the text-space baselines (APE, OPRO, ProTeGi, TextGrad, PE2, EvoPrompt) share: asking the optimizer LLM,
per-example scoring with memory, minibatches and a UCB bandit (reading its replies: `baselines.parsing`).

`ask` sends meta-prompts to the optimizer LLM, parses every sample once (never retries) and adds the outputs
it could not use to `ctx.cost.unparseable`.
All randomness comes from `ctx.rng`; every sampled optimizer call gets its seed from it as well, so a run is
reproduced by its seed and a resumed run continues exactly where the step log stopped.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from baselines.parsing import Parsed
from harness.core.config import configure  # noqa: F401  (re-exported: every method configures the same way)
from harness.core.context import OptimizeContext
from harness.core.types import ChatPrompt, Example, GenParams, PromptPosition, Task
from harness.evaluation.evaluate import build_prompt

REASONING_CHARS = 400  # how much of the task model's reasoning an error report shows
SEED_RANGE = 2**31 - 1



# ------------------------------------------------------------------------------------- configs


def snapshot(state: Any) -> Any:
    """A JSON copy of a method's state for `ctx.log_step`, so later changes to the live state do not reach
    the logged step (the in-memory log then holds what the step file holds)."""
    return json.loads(json.dumps(state))


# ------------------------------------------------------------------------------------- the optimizer LLM


@dataclass(frozen=True, kw_only=True)
class Ask:
    """How to sample the optimizer LLM: `n` samples per meta-prompt at `temperature`, at most `max_tokens`."""

    temperature: float
    max_tokens: int
    n: int = 1


def ask(
    ctx: OptimizeContext,
    meta_prompts: Sequence[str],
    how: Ask,
    parse: Callable[[str], Parsed | tuple[list[str], str]],
    tally: Counter | None = None,
) -> list[list[Any]]:
    """Send each meta-prompt to `ctx.optimizer_model` as one user turn; parse every sample exactly once.

    Returns, per meta-prompt, the parsed values of its samples (failures left out). Failed parses are added
    to `ctx.cost.unparseable`; `tally` counts the statuses. Sampled calls draw their seed from `ctx.rng`.
    """
    if not meta_prompts:
        return []
    seed = ctx.rng.randrange(SEED_RANGE) if how.temperature > 0 else 0
    params = GenParams(temperature=how.temperature, max_tokens=how.max_tokens, n=how.n if how.temperature > 0 else 1, seed=seed)
    gens = ctx.optimizer_model.generate([ChatPrompt(user=m) for m in meta_prompts], params)
    out: list[list[Any]] = []
    for g in gens:
        values = []
        for s in g.samples:
            got = parse(s.text)
            if isinstance(got, Parsed):
                status, value = got.status, got.text
                if got.capped and tally is not None:
                    tally["capped"] += 1
            else:
                value, status = got
            if tally is not None:
                tally[status] += 1
            if status == "failed":
                ctx.cost.unparseable += 1
            else:
                values.append(value)
        out.append(values)
    return out


# ------------------------------------------------------------------------------------- data for meta-prompts


def sample(rng: Any, examples: Sequence[Example], k: int) -> list[Example]:
    """k examples drawn without replacement by `rng` (all of them, shuffled, when there are fewer)."""
    return rng.sample(list(examples), min(k, len(examples)))


def disjoint_sets(rng: Any, examples: Sequence[Example], n_sets: int, size: int) -> list[list[Example]]:
    """Up to `n_sets` disjoint sets of `size` examples (fewer sets when the data runs out, at least one)."""
    pool = sample(rng, examples, n_sets * size)
    sets = [pool[i : i + size] for i in range(0, len(pool), size)]
    return [s for s in sets if len(s) == size] or sets[:1]


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def format_demos(examples: Sequence[Example]) -> str:
    """Input/output pairs (APE's demonstrations)."""
    return "\n\n".join(f"Input: {ex.input}\nOutput: {ex.target}" for ex in examples)


def format_with_instruction(ex: Example, position: PromptPosition | str, placeholder: str = "<INS>") -> str:
    """A question with a placeholder where the instruction goes, as the task model will see it, and its gold
    answer (OPRO's exemplars)."""
    p = build_prompt(ex, placeholder, position)
    head = f"Q: {p.user}" + (f"\nA: {p.assistant_prefix}" if p.assistant_prefix else "\nA:")
    return f"{head}\nGround truth answer: {ex.target}"


def format_outcome(record: Mapping[str, Any], reading: str, reasoning_chars: int = REASONING_CHARS) -> str:
    """One scored example for a feedback request: question, the model's reasoning (shortened), its answer,
    the gold answer and the exact-match verdict."""
    verdict = "correct" if record.get("correct") else "wrong"
    return (
        f"Question: {record['input']}\n"
        f"Model's reasoning: {shorten(record.get('reasoning', ''), reasoning_chars) or '(empty)'}\n"
        f"Model's final answer: {record.get('prediction') or '(none found)'}\n"
        f"Correct answer: {record['gold']}\n"
        f"Result ({reading} exact match): {verdict}"
    )


# ------------------------------------------------------------------------------------- scoring with memory


class Outcomes:
    """Exact-match outcomes per (instruction, example), scored through `ctx.score` and remembered.

    Greedy decoding makes an outcome a fixed fact, so no method pays twice for the same pair (and two
    scorings can never disagree because of batching). Each pair keeps `[correct, prediction, reasoning]`,
    the reasoning (shortened to `reasoning_chars`) only with `keep_reasoning` (for feedback requests). The
    memory is small enough to go into a method's resume state.
    """

    def __init__(self, task: Task, ctx: OptimizeContext, *, keep_reasoning: bool = False, reasoning_chars: int = REASONING_CHARS) -> None:
        self.task, self.ctx = task, ctx
        self.keep_reasoning, self.reasoning_chars = keep_reasoning, reasoning_chars
        self.memory: dict[str, dict[str, list[Any]]] = {}
        self.reading: str = ctx.primary_reading or "greedy"

    def records(self, instruction: str, examples: Sequence[Example]) -> list[dict[str, Any]]:
        """One record per example, in order (input, gold, prediction, correct, reasoning); missing pairs are
        scored in one batch."""
        known = self.memory.setdefault(instruction, {})
        missing = [ex for ex in examples if ex.id not in known]
        if missing:
            result = self.ctx.score(self.task, missing, instruction or None)
            self.reading = result.primary
            for ex, rec in zip(missing, result.examples):
                ok = bool(rec[f"{result.primary}_correct"])
                why = shorten(rec["reasoning"], self.reasoning_chars) if self.keep_reasoning else None
                known[ex.id] = [int(ok), rec.get(result.primary), why]
        return [
            {"input": ex.input, "gold": ex.target, "correct": bool(known[ex.id][0]), "prediction": known[ex.id][1],
             "reasoning": known[ex.id][2] or ""}
            for ex in examples
        ]

    def correct(self, instruction: str, examples: Sequence[Example]) -> list[bool]:
        return [r["correct"] for r in self.records(instruction, examples)]

    def accuracy(self, instruction: str, examples: Sequence[Example]) -> float:
        c = self.correct(instruction, examples)
        return sum(c) / len(c) if c else 0.0

    def errors(self, instruction: str, examples: Sequence[Example]) -> list[dict[str, Any]]:
        return [r for r in self.records(instruction, examples) if not r["correct"]]

    def to_state(self) -> dict[str, Any]:
        return {"reading": self.reading, "memory": self.memory}

    def from_state(self, state: Mapping[str, Any] | None) -> Outcomes:
        if state:
            self.reading = state["reading"]
            self.memory = {k: {i: list(v) for i, v in d.items()} for k, d in state["memory"].items()}
        return self


# ------------------------------------------------------------------------------------- bandits


def ucb_pick(stats: Mapping[str, tuple[int, int]], k: int, c: float, rng: Any) -> list[str]:
    """The k arms with the highest upper confidence bound mean + c * sqrt(ln T / n), where T counts all
    trials; arms never played come first, in an order drawn by `rng`. `stats[arm] = (correct, trials)`."""
    total = sum(n for _, n in stats.values())
    fresh = [a for a, (_, n) in stats.items() if n == 0]
    rng.shuffle(fresh)

    def bound(arm: str) -> float:
        wins, n = stats[arm]
        return wins / n + c * math.sqrt(math.log(max(total, 1)) / n)

    played = sorted((a for a in stats if stats[a][1] > 0), key=lambda a: -bound(a))  # stable on ties
    return (fresh + played)[:k]


def ucb_bandit(
    arms: Sequence[str],
    data: Sequence[Example],
    outcomes: Outcomes,
    rng: Any,
    *,
    rounds: int,
    arms_per_round: int,
    samples_per_eval: int,
    c: float,
    out_of_budget: Callable[[], bool] = lambda: False,
) -> dict[str, tuple[int, int]]:
    """UCB over instructions (as ProTeGi and APE use it): each round draws `samples_per_eval` random examples
    and plays the `arms_per_round` arms with the highest bounds on them. Returns `(correct, trials)` per arm;
    stops early (with what it has) when `out_of_budget()` turns true."""
    stats: dict[str, tuple[int, int]] = {a: (0, 0) for a in arms}
    for _ in range(rounds):
        batch = sample(rng, data, samples_per_eval)
        for arm in ucb_pick(stats, arms_per_round, c, rng):
            if out_of_budget():
                return stats
            wins = sum(outcomes.correct(arm, batch))
            w, n = stats[arm]
            stats[arm] = (w + wins, n + len(batch))
    return stats


def mean_score(stat: tuple[int, int]) -> float:
    wins, n = stat
    return wins / n if n else 0.0


def rank(stats: Mapping[str, tuple[int, int]], ctx: OptimizeContext | None = None) -> list[str]:
    """Arms (prompts) by mean score, best first; ties go to the arm tried more, then to the earlier one. With
    `ctx`, by its selection score (the run's length penalty subtracted: `OptimizeContext.selection_score`)."""
    order = list(stats)
    score = (lambda a: ctx.selection_score(a, mean_score(stats[a]))) if ctx is not None else (lambda a: mean_score(stats[a]))
    return sorted(order, key=lambda a: (-score(a), -stats[a][1], order.index(a)))
