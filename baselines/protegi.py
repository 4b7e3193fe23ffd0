"""ProTeGi / APO (Pryzant et al., EMNLP 2023): beam search over prompts with "textual gradients".

Each round, for every prompt in the beam:
1. score it on a random train minibatch and collect the errors;
2. gradients: several times, show the optimizer LLM a few sampled errors and ask for reasons the prompt
   failed (each reason between <START> and <END>);
3. edits: for each reason, ask for improved prompts that fix it;
4. paraphrases: Monte-Carlo variations that keep the meaning, of every edit and of the parent;
5. drop duplicates and cap the successors per parent (a random sample).
The parents join their successors, and a bandit picks the next beam under a fixed evaluation budget: UCB
(the paper's default) or successive rejects. After the last round the best of the beam is returned.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from baselines.common import (
    Ask,
    Outcomes,
    ask,
    configure,
    format_outcome,
    mean_score,
    rank,
    sample,
    snapshot,
    ucb_bandit,
)
from baselines.parsing import dedupe, parse_list
from harness.core.context import OptimizeContext
from harness.core.types import BenchError, Example, Needs, OptimizeResult, PromptCandidate, Task

GRADIENT_PROMPT = """I am writing an instruction that a language model reads together with each question before it answers.

Current instruction: "{prompt}"

With this instruction the model got the following examples wrong:

{errors}

Give {n} reason(s) why the instruction may have led to these mistakes. Write each reason between <START> and <END>."""

EDIT_PROMPT = """I am writing an instruction that a language model reads together with each question before it answers.

Current instruction: "{prompt}"

With this instruction the model got the following examples wrong:

{errors}

A problem with the instruction is: {reason}

Using this, write {n} improved instruction(s) that fix the problem. Write each new instruction between <START> and <END>."""

PARAPHRASE_PROMPT = """Rewrite the following instruction in different words, keeping its meaning.

Instruction: {prompt}

Write the new instruction between <START> and <END>."""

OPEN, CLOSE = "START", "END"  # items are wrapped as <START> ... <END>
SELECTIONS = ("ucb", "successive_rejects")


@dataclass(frozen=True, kw_only=True)
class ProtegiConfig:
    rounds: int = 6  # beam-search rounds
    beam_size: int = 4
    minibatch_size: int = 64  # train examples a parent is scored on to find its errors
    n_gradients: int = 4  # gradient requests per parent
    errors_per_gradient: int = 4  # errors shown in each request
    reasons_per_gradient: int = 1  # reasons asked for per request
    edits_per_reason: int = 1  # improved prompts asked for per reason
    paraphrases: int = 2  # Monte-Carlo paraphrases per edit (and of the parent)
    max_successors: int = 8  # successors kept per parent (a random sample)
    temperature: float = 0.7  # gradient, edit and paraphrase sampling
    selection: str = "ucb"  # "ucb" or "successive_rejects"
    eval_rounds: int = 8  # the selection budget: eval_rounds x eval_prompts_per_round x samples_per_eval
    eval_prompts_per_round: int = 8
    samples_per_eval: int = 32
    ucb_c: float = 1.0
    initial_instruction: str = "Let's think step by step."
    max_tokens: int = 200  # optimizer-LLM output length per sample
    max_prompt_chars: int = 600
    reasoning_chars: int = 300  # how much of the task model's reasoning an error shows

    def __post_init__(self) -> None:
        for name in ("rounds", "beam_size", "minibatch_size", "n_gradients", "errors_per_gradient",
                     "reasons_per_gradient", "edits_per_reason", "max_successors", "eval_rounds",
                     "eval_prompts_per_round", "samples_per_eval", "max_tokens", "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise BenchError(f"protegi: {name} must be at least 1")
        if self.paraphrases < 0 or self.temperature <= 0 or self.ucb_c < 0 or self.reasoning_chars < 0:
            raise BenchError("protegi: paraphrases >= 0, temperature > 0, ucb_c >= 0 and reasoning_chars >= 0")
        if self.selection not in SELECTIONS:
            raise BenchError(f"protegi: selection must be one of {', '.join(SELECTIONS)}, not {self.selection!r}")

    @property
    def selection_budget(self) -> int:
        """Example evaluations the bandit may spend per round (both bandits get the same)."""
        return self.eval_rounds * self.eval_prompts_per_round * self.samples_per_eval


PRESETS = {
    # The paper's settings: 6 rounds, beam 4, minibatch 64, 4 gradients x 4 errors, 2 paraphrases, 8
    # successors per parent, UCB with 8 rounds x 8 prompts x 32 samples, c = 1.0, temperature 0.7.
    "paper": ProtegiConfig(),
    # One BBH task with smollm2-135m optimizing itself on 2 cores, 128-token reasoning, in ~15 min with
    # run_optimize's dev and test scoring: 3 rounds, beam 2, minibatch 16, 2 gradients x 3 errors, 1 edit
    # per reason, 1 paraphrase, 4 successors per parent, UCB with 3 rounds x 4 prompts x 8 samples: <= 16 + 96
    # then <= 2 x 16 + 96 scored answers per round (~370 in all, fewer with the memory; ~1-1.5 s each) and
    # 3 batched optimizer calls per parent.
    "cpu": ProtegiConfig(
        rounds=3, beam_size=2, minibatch_size=16, n_gradients=2, errors_per_gradient=3, paraphrases=1,
        max_successors=4, eval_rounds=3, eval_prompts_per_round=4, samples_per_eval=8, max_tokens=128,
    ),
    # Seconds with a scripted model (tests).
    "smoke": ProtegiConfig(
        rounds=2, beam_size=2, minibatch_size=4, n_gradients=2, errors_per_gradient=2, paraphrases=1,
        max_successors=3, eval_rounds=2, eval_prompts_per_round=2, samples_per_eval=3, max_tokens=40,
    ),
}


class Protegi:
    name = "protegi"
    needs = Needs(optimizer_llm=True)  # an LLM writes its prompts (the task model unless the run names another)

    def __init__(self, config: ProtegiConfig) -> None:
        self.config = config

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        cfg = self.config
        outcomes = Outcomes(task, ctx, keep_reasoning=True, reasoning_chars=cfg.reasoning_chars)
        state = ctx.resume()
        if state is None:
            st: dict[str, Any] = {"round": 0, "beam": [cfg.initial_instruction], "scores": {}, "candidates": None,
                                  "tally": {}}
        else:
            st = state
            outcomes.from_state(st["outcomes"])
        tally = Counter(st["tally"])

        def save(record: dict[str, Any]) -> None:
            st["tally"], st["outcomes"] = dict(tally), outcomes.to_state()
            ctx.log_step({"method": self.name, "round": st["round"], **record}, snapshot(st))

        while st["round"] < cfg.rounds and not ctx.out_of_budget():
            if st["candidates"] is None:  # expansion
                parents, successors, generated = list(st["beam"]), {}, {}
                for parent in parents:
                    if ctx.out_of_budget():
                        break
                    generated[parent], successors[parent] = self.expand(parent, train, outcomes, ctx, tally, parents)
                pool = dedupe([s for ss in successors.values() for s in ss], seen=parents)
                st["candidates"] = parents + pool  # the parents are kept
                save({"phase": "expand", "generated": generated, "successors": successors})
            if ctx.out_of_budget():
                break
            ranked, stats = self.select(st["candidates"], train, outcomes, ctx)
            st["beam"] = ranked[: cfg.beam_size]
            st["scores"] = {a: list(stats[a]) for a in ranked}
            st["round"] += 1
            st["candidates"] = None
            best = st["beam"][0]
            ctx.progress(f"protegi round {st['round']}/{cfg.rounds}: {len(ranked)} candidates; "
                         f"best {mean_score(stats[best]):.2f} {best!r}")
            save({"phase": "select", "beam": st["beam"], "scores": st["scores"],
                  "train_accuracy": mean_score(stats[best]),  # the shared curve key
                  "selection_score": ctx.selection_score(best, mean_score(stats[best]))})

        scores = {a: tuple(v) for a, v in st["scores"].items()}
        beam = [b for b in st["beam"] if b in scores] or st["beam"]
        cands = tuple(PromptCandidate(text=b, score=mean_score(scores[b]) if b in scores else None,
                                      meta={"trials": scores[b][1]} if b in scores else {}) for b in beam)
        return OptimizeResult(
            best=cands[0], candidates=cands, cost=ctx.cost,
            meta={"rounds": st["round"], "selection": cfg.selection, "parses": dict(tally)},
        )

    # ------------------------------------------------------------------ expansion
    def expand(
        self, parent: str, train: Sequence[Example], outcomes: Outcomes, ctx: OptimizeContext, tally: Counter, taken: Sequence[str]
    ) -> tuple[int, list[str]]:
        """The successors of one parent: gradients from its minibatch errors, edits, paraphrases, deduplicated
        and capped at `max_successors` (a random sample). Returns (distinct successors before the cap, kept)."""
        cfg = self.config
        errors = outcomes.errors(parent, sample(ctx.rng, train, cfg.minibatch_size))
        if not errors:
            return 0, []
        shown = [
            _format_errors(sample(ctx.rng, errors, cfg.errors_per_gradient), outcomes.reading, cfg.reasoning_chars)
            for _ in range(cfg.n_gradients)
        ]

        def items(k: int) -> Any:  # a parser of up to k <START>...<END> items
            return lambda text: parse_list(text, OPEN, close=CLOSE, max_items=k, max_chars=cfg.max_prompt_chars)

        how = Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        metas = [GRADIENT_PROMPT.format(prompt=parent, errors=e, n=cfg.reasons_per_gradient) for e in shown]
        reasons = ask(ctx, metas, how, items(cfg.reasons_per_gradient), tally)  # [request][sample] -> [reason]
        pairs = [(err, r) for err, per_request in zip(shown, reasons) for rs in per_request for r in rs]
        metas = [EDIT_PROMPT.format(prompt=parent, errors=err, reason=r, n=cfg.edits_per_reason) for err, r in pairs]
        edits = dedupe((e for per_reason in ask(ctx, metas, how, items(cfg.edits_per_reason), tally)
                        for es in per_reason for e in es), seen=taken)
        paraphrased: list[str] = []
        if cfg.paraphrases:  # Monte-Carlo variations of every edit and of the parent
            how = Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens, n=cfg.paraphrases)
            metas = [PARAPHRASE_PROMPT.format(prompt=p) for p in [*edits, parent]]
            paraphrased = [p for per_prompt in ask(ctx, metas, how, items(1), tally) for ps in per_prompt for p in ps]
        successors = dedupe(edits + paraphrased, seen=taken)
        generated = len(successors)
        if generated > cfg.max_successors:
            successors = ctx.rng.sample(successors, cfg.max_successors)
        return generated, successors

    # ------------------------------------------------------------------ selection
    def select(
        self, candidates: list[str], train: Sequence[Example], outcomes: Outcomes, ctx: OptimizeContext
    ) -> tuple[list[str], dict[str, tuple[int, int]]]:
        """The candidates best first, and their (correct, trials), by the configured bandit."""
        cfg = self.config
        if cfg.selection == "ucb":
            stats = ucb_bandit(
                candidates, train, outcomes, ctx.rng, rounds=cfg.eval_rounds, arms_per_round=cfg.eval_prompts_per_round,
                samples_per_eval=cfg.samples_per_eval, c=cfg.ucb_c, out_of_budget=ctx.out_of_budget,
            )
            return rank(stats, ctx), stats
        return successive_rejects(
            candidates, train, outcomes, ctx.rng, budget=cfg.selection_budget, out_of_budget=ctx.out_of_budget,
            score=ctx.selection_score,
        )


def successive_rejects(
    arms: Sequence[str],
    data: Sequence[Example],
    outcomes: Outcomes,
    rng: Any,
    *,
    budget: int,
    out_of_budget: Any = lambda: False,
    score: Any = lambda arm, accuracy: accuracy,
) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Successive rejects (Audibert & Bubeck 2010): K - 1 phases; in phase k every surviving arm is scored on
    the first n_k examples of one shared random order, then the worst is dropped. The returned stats rank the
    last survivor first, then the arms in reverse order of rejection. `score(arm, accuracy)`: what arms are
    compared by (the run's selection score)."""
    order = sample(rng, data, len(data))
    k_arms = len(arms)
    stats: dict[str, tuple[int, int]] = {a: (0, 0) for a in arms}
    if k_arms == 1:
        c = outcomes.correct(arms[0], order[: max(1, min(len(order), budget))])
        return list(arms), {arms[0]: (sum(c), len(c))}
    log_bar = 0.5 + sum(1 / i for i in range(2, k_arms + 1))
    alive, rejected = list(arms), []
    for k in range(1, k_arms):
        n_k = max(1, min(len(order), math.ceil((budget - k_arms) / (log_bar * (k_arms + 1 - k)))))
        for arm in alive:
            if out_of_budget():
                return _sr_stats(stats, alive, rejected, score)
            c = outcomes.correct(arm, order[:n_k])
            stats[arm] = (sum(c), len(c))
        worst = min(reversed(alive), key=lambda a: score(a, mean_score(stats[a])))  # ties: the later arm goes
        alive.remove(worst)
        rejected.append(worst)
    return _sr_stats(stats, alive, rejected, score)


def _sr_stats(
    stats: dict[str, tuple[int, int]], alive: list[str], rejected: list[str], score: Any
) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """The survivors by score (stable), then the rejected arms, last rejected first."""
    return sorted(alive, key=lambda a: -score(a, mean_score(stats[a]))) + rejected[::-1], stats


def _format_errors(records: Sequence[dict[str, Any]], reading: str, reasoning_chars: int) -> str:
    return "\n\n".join(f"Example {i + 1}\n{format_outcome(r, reading, reasoning_chars)}" for i, r in enumerate(records))


def make(preset: str = "cpu", **overrides: Any) -> Protegi:
    """ProTeGi/APO (Pryzant et al. 2023): textual gradients from failed examples edit the prompt; beam search with bandit selection."""
    return Protegi(configure("protegi", PRESETS, preset, overrides))
