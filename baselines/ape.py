"""APE (Zhou et al., ICLR 2023): infer the instruction from demonstrations, then keep the one that scores best.

1. Propose: draw disjoint sets of train input/output pairs; for each set, ask the optimizer LLM (several
   samples at temperature 0.9) which instruction would have produced those outputs.
2. Score: execution accuracy of every distinct proposal on a train subset kept apart from the
   demonstrations; optionally a UCB bandit over rounds spends the evaluations on promising proposals.
3. Optionally resample: semantic-preserving variations of the top proposals, scored the same way.
4. Return the best-scoring proposal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from baselines.common import (
    Ask,
    Outcomes,
    ask,
    configure,
    disjoint_sets,
    format_demos,
    mean_score,
    rank,
    sample,
    snapshot,
    ucb_bandit,
)
from baselines.parsing import dedupe, parse_tagged
from harness.core.context import OptimizeContext
from harness.core.types import BenchError, Example, Needs, OptimizeResult, PromptCandidate, Task

PROPOSE_PROMPT = """I gave a friend an instruction and {n} inputs. My friend followed the instruction and wrote one output for each input. Here are the input-output pairs:

{demos}

What instruction did I give? State it as one short instruction that would work for any input of this kind. Reply with the instruction only, between <INS> and </INS>."""

VARIATION_PROMPT = """Write a variation of the instruction below that keeps its meaning but words it differently.

Instruction: {instruction}

Reply with the new instruction only, between <INS> and </INS>."""

TAG = "INS"
SCORE_CHUNK = 8  # proposals scored between two step records


@dataclass(frozen=True, kw_only=True)
class ApeConfig:
    demo_sets: int = 5  # disjoint demonstration sets
    demos_per_set: int = 5  # input/output pairs per set
    samples_per_set: int = 50  # proposals sampled per set (5 x 50 = 250; instruction induction: 3 x 30)
    temperature: float = 0.9  # proposal sampling temperature
    max_tokens: int = 50  # optimizer-LLM output length per sample
    eval_size: int = 50  # train examples a proposal is scored on (kept apart from the demos when possible)
    bandit: bool = False  # UCB over rounds instead of scoring every proposal on all `eval_size` examples
    bandit_rounds: int = 20
    bandit_fraction: float = 1 / 3  # share of the proposals played per round
    bandit_samples: int = 5  # examples per play
    bandit_c: float = 1.0  # exploration weight
    resample_top: int = 0  # iterative APE: variations of the top-k proposals (0: off, the paper's default)
    resample_samples: int = 5  # variations per kept proposal
    max_prompt_chars: int = 500  # longer proposals are cut here

    def __post_init__(self) -> None:
        for name in ("demo_sets", "demos_per_set", "samples_per_set", "max_tokens", "eval_size", "bandit_rounds",
                     "bandit_samples", "resample_samples", "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise BenchError(f"ape: {name} must be at least 1")
        if self.temperature <= 0 or not 0 < self.bandit_fraction <= 1 or self.resample_top < 0 or self.bandit_c < 0:
            raise BenchError("ape: temperature > 0, 0 < bandit_fraction <= 1, resample_top >= 0 and bandit_c >= 0")


PRESETS = {
    # The paper's main setting: 5 demo sets x 50 samples (250 proposals) at temperature 0.9, each scored on
    # 50 train examples (BBH train splits are smaller: then the whole remaining split).
    "paper": ApeConfig(),
    # One BBH task with smollm2-135m proposing for itself on 2 cores, 128-token reasoning, in ~15 min with
    # run_optimize's dev and test scoring: 5 sets x 5 demos, 5 samples each (<= 25 proposals, 5 optimizer
    # calls in one batch) scored on 16 held-out train examples: <= 400 scored answers (~1-1.5 s each).
    "cpu": ApeConfig(samples_per_set=5, eval_size=16),
    # Seconds with a scripted model (tests): 2 sets x 2 demos, 3 samples each, scored on 4 examples.
    "smoke": ApeConfig(demo_sets=2, demos_per_set=2, samples_per_set=3, eval_size=4, max_tokens=40),
}


class Ape:
    name = "ape"
    needs = Needs(optimizer_llm=True)  # an LLM writes its prompts (the task model unless the run names another)

    def __init__(self, config: ApeConfig) -> None:
        self.config = config

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        cfg = self.config
        by_id = {ex.id: ex for ex in train}
        outcomes = Outcomes(task, ctx)
        state = ctx.resume()
        if state is None:
            sets = disjoint_sets(ctx.rng, train, cfg.demo_sets, cfg.demos_per_set)
            used = {ex.id for s in sets for ex in s}
            rest = [ex for ex in train if ex.id not in used]
            eval_set = sample(ctx.rng, rest, cfg.eval_size)
            if len(eval_set) < cfg.eval_size:  # a small train split: top up from the demonstrations
                eval_set += sample(ctx.rng, [ex for ex in train if ex.id in used], cfg.eval_size - len(eval_set))
            st: dict[str, Any] = {"phase": "propose", "sets": [[ex.id for ex in s] for s in sets],
                                  "eval": [ex.id for ex in eval_set], "proposals": [], "scores": {}, "tally": {}}
        else:
            st = state
            outcomes.from_state(st["outcomes"])
        eval_set = [by_id[i] for i in st["eval"]]
        tally = Counter(st["tally"])

        def save(record: dict[str, Any]) -> None:
            st["tally"], st["outcomes"] = dict(tally), outcomes.to_state()
            stats = _stats(st["scores"])
            played = [t for t in rank(stats, ctx) if stats[t][1] > 0]
            if played:  # the shared curve key: the best proposal's score so far
                record = {**record, "train_accuracy": mean_score(stats[played[0]]),
                          "selection_score": ctx.selection_score(played[0], mean_score(stats[played[0]]))}
            ctx.log_step({"method": self.name, "phase": st["phase"], **record}, snapshot(st))

        if st["phase"] == "propose" and not ctx.out_of_budget():
            metas = [PROPOSE_PROMPT.format(n=len(ids), demos=format_demos([by_id[i] for i in ids])) for ids in st["sets"]]
            how = Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens, n=cfg.samples_per_set)
            per_set = ask(ctx, metas, how, self._parse, tally)
            st["proposals"] = dedupe(p for ps in per_set for p in ps)
            st["phase"] = "score"
            ctx.progress(f"ape: {len(st['proposals'])} distinct proposals from {len(metas)} demo sets")
            save({"proposed": st["proposals"]})

        if st["phase"] == "score":
            self._score(st, eval_set, outcomes, ctx, save)
            if not ctx.out_of_budget():
                st["phase"] = "resample" if cfg.resample_top else "done"

        if st["phase"] == "resample" and not ctx.out_of_budget():
            top = rank(_stats(st["scores"]), ctx)[: cfg.resample_top]
            how = Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens, n=cfg.resample_samples)
            variations = ask(ctx, [VARIATION_PROMPT.format(instruction=t) for t in top], how, self._parse, tally)
            fresh = dedupe((v for vs in variations for v in vs), seen=st["proposals"])
            st["proposals"] += fresh
            st["phase"] = "score-variations"
            save({"variations": fresh})
        if st["phase"] == "score-variations":
            self._score(st, eval_set, outcomes, ctx, save)
            if not ctx.out_of_budget():
                st["phase"] = "done"

        stats = _stats(st["scores"])
        ranked = [t for t in rank(stats, ctx) if stats[t][1] > 0]
        meta = {"proposals": len(st["proposals"]), "scored": len(ranked), "eval_size": len(eval_set),
                "parses": dict(tally), "phase": st["phase"]}
        if not ranked:  # out of budget before any proposal was scored
            text = st["proposals"][0] if st["proposals"] else ""
            return OptimizeResult(best=PromptCandidate(text=text), cost=ctx.cost, meta=meta)
        cands = tuple(
            PromptCandidate(text=t, score=mean_score(stats[t]), meta={"trials": stats[t][1]}) for t in ranked[:10]
        )
        return OptimizeResult(best=cands[0], candidates=cands, cost=ctx.cost, meta=meta)

    def _parse(self, text: str) -> Any:
        return parse_tagged(text, TAG, max_chars=self.config.max_prompt_chars)

    def _score(self, st: dict[str, Any], eval_set: list[Example], outcomes: Outcomes, ctx: OptimizeContext, save: Any) -> None:
        """Score the proposals without a score yet: all of them on the eval subset, or by the UCB bandit."""
        cfg = self.config
        todo = [p for p in st["proposals"] if p not in st["scores"]]
        if not todo:  # e.g. resumed after this phase's last step
            return
        if cfg.bandit:
            arms = todo if st["phase"] == "score-variations" else st["proposals"]
            per_round = max(1, round(cfg.bandit_fraction * len(arms)))
            stats = ucb_bandit(
                arms, eval_set, outcomes, ctx.rng, rounds=cfg.bandit_rounds, arms_per_round=per_round,
                samples_per_eval=cfg.bandit_samples, c=cfg.bandit_c, out_of_budget=ctx.out_of_budget,
            )
            st["scores"].update({a: list(v) for a, v in stats.items()})
            save({"bandit": {a: list(v) for a, v in stats.items()}})
            return
        for start in range(0, len(todo), SCORE_CHUNK):
            done = []
            for text in todo[start : start + SCORE_CHUNK]:
                if ctx.out_of_budget():
                    break
                c = outcomes.correct(text, eval_set)
                st["scores"][text] = [sum(c), len(c)]
                done.append([text, sum(c) / len(c)])
            if done:
                stats = _stats(st["scores"])
                best = rank(stats, ctx)[0]
                ctx.progress(f"ape: scored {len(stats)}/{len(st['proposals'])}; "
                             f"best {mean_score(stats[best]):.2f} {best!r}")
                save({"scored": done})
            if ctx.out_of_budget():
                return


def _stats(scores: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    return {t: (int(v[0]), int(v[1])) for t, v in scores.items()}


def make(preset: str = "cpu", **overrides: Any) -> Ape:
    """APE (Zhou et al. 2023): an LLM induces instructions from input-output demos; the best on a dev sample win, then are paraphrased."""
    return Ape(configure("ape", PRESETS, preset, overrides))
