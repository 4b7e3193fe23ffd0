"""EvoPrompt (Guo et al., ICLR 2024): the optimizer LLM is the evolutionary operator over a population of
prompts, as a genetic algorithm (GA) or as differential evolution (DE).

A prompt's fitness is its accuracy on the fitness set; the operators see prompts only (no examples, no errors):
the only task signal is which prompts survive.
- Initial population: `init="pool"` (the reference's BBH setting) scores a pool of 20 chain-of-thought
  triggers, keeps the best `popsize // 2` and adds a meaning-preserving paraphrase of each; `init="seed"` (the
  budget-matched profile of the `cpu` and `smoke` presets) starts from the run's seed instruction plus
  `popsize - 1` paraphrases of it. Paraphrases use APE's variation request.
- GA, per generation: `popsize` parents drawn by roulette wheel (probability proportional to fitness); for
  each of `popsize` children two of them go into the crossover-then-mutate meta-prompt; the children are
  scored, and the best `popsize` distinct prompts of the population and its children survive (elitist).
- DE, per generation, for each member p: three other members a, b, c, with c replaced by the best prompt
  found so far, go into the four-step meta-prompt (the parts where a and b differ, mutated, spliced into c,
  crossed over with p); the trial replaces p only if it scores higher (ties keep p).
The best member of the final population is returned (ties: the earlier-scored prompt). Under a budget
(`--budget`) generations go on until the budget is used (pe2-evoprompt.md, "scale by budget, not by steps"), or
until `stall_generations` generations in a row scored no new prompt (a harness guard: an optimizer whose replies
never parse would otherwise loop without spending anything).

Departures from the released code (beeevita/EvoPrompt @ 94caff3, BBH/), for the README:
- Fitness set: the harness's train split (`fitness_split`; `dev` is an option), optionally a random subset
  (`fitness_size`). The reference's only split, a 50-example "dev" sample, is the set it optimizes on: in the
  harness that is train (as for APE, OPRO and ProTeGi; BBH train has 50 rows), and dev stays a held-out report.
- Task model: the harness's shared zero-shot evaluation (template, extractor, decoding) instead of 3-shot
  CoT exemplars with the prompt placed in each.
- `init="pool"` uses a pool written for this project (same role as BBH/prompts.txt: generic CoT triggers);
  its scores are paid by every run (the reference caches them per task and seed). No client-test call.
- Parsing: the last <prompt> span, or an unclosed last <prompt> up to the end of its line; a reply without
  the tag is a parse failure (`cost.unparseable`; GA: no child, DE: the member stays, unscored trial) instead
  of the whole reply becoming the prompt. A child copying the meta-prompt's worked example or steps (8 words
  in a row) is dropped and counted; a prompt over `max_prompt_chars` is cut at a sentence end and counted.
- Scores are kept by normalised text (case, spacing, end punctuation): a duplicate costs nothing and is
  counted as a cache hit.
- GA replacement merges population then children in order, drops normalised duplicates and sorts stably
  (ties: the earlier prompt); the reference's `set()` makes ties depend on PYTHONHASHSEED. A merged pool short
  of `popsize` is refilled with the best other prompts scored so far (the reference fails on a short one).
- Roulette wheel with every fitness 0: uniform draws (the reference divides by zero). DE with fewer than 3
  other members: donors drawn with replacement (the reference needs popsize >= 4).
- GA asks for a generation's children in one batch (parents drawn first, as in the reference); DE asks per
  member (the best donor changes within a generation). All draws, and every call's seed, come from the run's RNG.
- The operator meta-prompts end with "1. " at the end of the user turn, as the reference's chat-model path;
  their worked examples are the reference's domains (sentiment for GA, simplification for DE) in new words.
- Result: the final population's top-1 (the reference scores its top 5 on test).
- Under a budget, `generations` is not a limit: generations go on until the budget is used or
  `stall_generations` in a row scored no new prompt (the reference has no budget).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from baselines.ape import TAG as VARIATION_TAG
from baselines.ape import VARIATION_PROMPT
from baselines.common import Ask, ask, configure, sample, snapshot
from baselines.evoprompt_prompts import DE_PROMPT, GA_PROMPT, TRIGGER_POOL
from baselines.parsing import CopyGuard, Parsed, clean_text, dedupe, normalise, parse_tagged
from harness.core.context import OptimizeContext
from harness.core.types import ZERO_SHOT_COT, BenchError, Example, Needs, OptimizeResult, PromptCandidate, Task

TAG = "prompt"
COPY_WORDS = 8  # a run this long shared with the worked examples is a copy
INITS = ("pool", "seed")
FITNESS_SPLITS = ("train", "dev")
SELECTIONS = ("wheel", "random", "tour")
DONORS = ("best", "random")
_OPEN, _CLOSE = re.compile(rf"<\s*{TAG}\s*>", re.IGNORECASE), re.compile(rf"<\s*/\s*{TAG}\s*>", re.IGNORECASE)
# The fixed text of both operator prompts (slots empty): what a copying model reproduces.
DEMO_GUARD = CopyGuard([GA_PROMPT.format(prompt1="", prompt2=""),
                        DE_PROMPT.format(prompt1="", prompt2="", prompt3="", prompt0="")], n=COPY_WORDS)


@dataclass(frozen=True, kw_only=True)
class EvoConfig:
    popsize: int = 10  # BBH/scripts/run_ga_cot.sh and run_de_cot.sh (POPSIZE=10); BBH/args.py
    generations: int = 10  # the scripts' BUDGET=10; BBH/args.py --budget
    init: str = "pool"  # the scripts' --initial cot --initial_mode para_topk (BBH/utils.py:k_init_pop)
    initial_instruction: str = ZERO_SHOT_COT  # init="seed": the first member (the harness's seed prompt)
    temperature: float = 0.5  # operators and paraphrases: BBH/evoluter.py (llm_query(..., temperature=0.5))
    max_tokens: int = 1000  # optimizer output per call: BBH/llm_client.py:form_request
    fitness_split: str = "train"  # harness choice (see the module docstring); the reference: its dev sample
    fitness_size: int | None = None  # None: the whole split (BBH train: 50 = the scripts' --sample_num 50)
    max_prompt_chars: int = 600  # harness guard: longer prompts are cut
    stall_generations: int = 3  # harness guard under a budget: this many generations without a new prompt end it

    def __post_init__(self) -> None:
        for name in ("generations", "max_tokens", "max_prompt_chars", "stall_generations"):
            if getattr(self, name) < 1:
                raise BenchError(f"evoprompt: {name} must be at least 1")
        if self.popsize < 2 or self.temperature < 0:
            raise BenchError("evoprompt: popsize must be at least 2 and temperature >= 0")
        if self.fitness_size is not None and self.fitness_size < 1:
            raise BenchError("evoprompt: fitness_size must be at least 1 (or None for the whole split)")
        for name, allowed in (("init", INITS), ("fitness_split", FITNESS_SPLITS)):
            if getattr(self, name) not in allowed:
                raise BenchError(f"evoprompt: {name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")


@dataclass(frozen=True, kw_only=True)
class GaConfig(EvoConfig):
    selection: str = "wheel"  # BBH/args.py --sel_mode (replacement: --ga_mode topk)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.selection not in SELECTIONS:
            raise BenchError(f"evoprompt-ga: selection must be one of {', '.join(SELECTIONS)}, not {self.selection!r}")


@dataclass(frozen=True, kw_only=True)
class DeConfig(EvoConfig):
    donor: str = "best"  # BBH/args.py --donor_random off (run_de_cot.sh): the third donor is the best prompt

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.popsize < 4:
            raise BenchError("evoprompt-de: popsize must be at least 4 (each member needs three others)")
        if self.donor not in DONORS:
            raise BenchError(f"evoprompt-de: donor must be one of {', '.join(DONORS)}, not {self.donor!r}")


# The paper's BBH setting: 20 pool prompts + 5 paraphrases + 10 generations x 10 children = 125 prompts scored
# on 50 examples. cpu: one BBH task with smollm2-135m optimizing itself on 2 cores, 128-token reasoning, in
# ~10-15 min: the seed plus 5 paraphrases, 3 generations of 6 children (<= 24 prompts on 16 train examples:
# <= 384 scored answers, ~1-1.5 s each) and 19 optimizer requests of <= 192 tokens (GA batches each generation).
# smoke: well under a second with scripted models (tests).
_CPU = dict(popsize=6, generations=3, init="seed", fitness_size=16, max_tokens=192)
_SMOKE = dict(popsize=4, generations=2, init="seed", fitness_size=4, max_tokens=60)
GA_PRESETS = {"paper": GaConfig(), "cpu": GaConfig(**_CPU), "smoke": GaConfig(**_SMOKE)}
DE_PRESETS = {"paper": DeConfig(), "cpu": DeConfig(**_CPU), "smoke": DeConfig(**_SMOKE)}


def parse_operator_reply(reply: str, max_chars: int) -> Parsed:
    """The final prompt: after the last <prompt>, up to </prompt> (or the end of that line when it never
    closes). A reply without the tag is a failure: its text is the operator's working, not a prompt."""
    opens = list(_OPEN.finditer(reply))
    if not opens:
        return Parsed(None, "failed")
    rest = reply[opens[-1].end() :]
    close = _CLOSE.search(rest)
    span, status = (rest[: close.start()], "tagged") if close else (rest.lstrip().partition("\n")[0], "partial")
    text, capped = clean_text(span, max_chars)
    return Parsed(text, status if text else "failed", capped)


def roulette(population: Sequence[str], scores: Sequence[float], k: int, rng: Any) -> tuple[list[str], bool]:
    """`k` draws with replacement, each member with probability proportional to its score; uniform when every
    score is 0. Returns (the draws, whether they were uniform)."""
    uniform = sum(scores) <= 0
    return rng.choices(list(population), weights=None if uniform else list(scores), k=k), uniform


class Fitness:
    """Scores by normalised prompt text, each scored once on the fitness set (a repeat is a cache hit), kept in
    scoring order (the order that breaks ties). `scored` is plain JSON for the resume state."""

    def __init__(self, task: Task, examples: Sequence[Example], ctx: OptimizeContext, tally: Counter,
                 scored: list[list[Any]] | None = None) -> None:
        self.task, self.examples, self.ctx, self.tally = task, list(examples), ctx, tally
        self.scored: list[list[Any]] = scored if scored is not None else []  # [text, score], in scoring order
        self.index = {normalise(t): i for i, (t, _) in enumerate(self.scored)}

    def add(self, text: str) -> str:
        """Score `text` unless a prompt with the same normalised text was scored; returns that prompt's text."""
        key = normalise(text)
        if key in self.index:
            self.tally["cache hit"] += 1
        else:
            self.index[key] = len(self.scored)
            self.scored.append([text, self.ctx.score(self.task, self.examples, text or None).accuracy])
        return self.scored[self.index[key]][0]

    def accuracy(self, text: str) -> float:
        """Accuracy on the fitness split (no length penalty)."""
        return self.scored[self.index[normalise(text)]][1]

    def of(self, text: str) -> float:
        """The fitness: accuracy on the fitness split, less the run's length penalty (`OptimizeContext.selection_score`)."""
        return self.ctx.selection_score(text, self.scored[self.index[normalise(text)]][1])

    def rank(self, texts: Sequence[str]) -> list[str]:
        """Best first; ties: the earlier-scored prompt."""
        return sorted(texts, key=lambda t: (-self.of(t), self.index[normalise(t)]))

    def best(self) -> str:
        return self.rank([t for t, _ in self.scored])[0]


class EvoPrompt:
    """What both variants share: the initial population, scoring, the generation loop, resume and the result.
    A variant implements `generation`."""

    name = "evoprompt"
    needs = Needs(optimizer_llm=True)  # an LLM writes its prompts (the task model unless the run names another)
    config: EvoConfig

    def __init__(self, config: EvoConfig) -> None:
        self.config = config

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        cfg = self.config
        split = list(train if cfg.fitness_split == "train" else dev)
        by_id = {ex.id: ex for ex in split}
        state = ctx.resume()
        if state is None:
            subset = sample(ctx.rng, split, cfg.fitness_size) if cfg.fitness_size else split
            st: dict[str, Any] = {"subset": [ex.id for ex in subset], "generation": 0, "population": [],
                                  "scored": [], "tally": {}}
        else:
            st = state
        tally = Counter(st["tally"])
        fitness = Fitness(task, [by_id[i] for i in st["subset"]], ctx, tally, st["scored"])
        curve = f"{cfg.fitness_split}_accuracy"  # the shared curve key: the population's best fitness

        def save(record: dict[str, Any]) -> None:
            st["tally"] = dict(tally)
            top = fitness.rank(st["population"])[0] if st["population"] else None
            best = {curve: fitness.accuracy(top), "selection_score": fitness.of(top)} if top is not None else {}
            ctx.log_step({"method": self.name, "generation": st["generation"], **record, **best}, snapshot(st))

        if state is None and not ctx.out_of_budget():
            save({"phase": "init", **self.initial_population(st, fitness, ctx, tally)})
        of = "" if ctx.budget.limited else f"/{cfg.generations}"  # under a budget, generations go on until it is used
        while st["population"] and not ctx.out_of_budget():
            if st["generation"] >= cfg.generations and not ctx.budget.limited:
                break
            if st.get("stall", 0) >= cfg.stall_generations:
                st["stopped"] = f"no new prompt in {cfg.stall_generations} generations"
                break
            known = len(fitness.scored)
            record = self.generation(st, fitness, ctx, tally)
            st["generation"] += 1
            st["stall"] = 0 if len(fitness.scored) > known else st.get("stall", 0) + 1
            top = fitness.rank(st["population"])[0]
            ctx.progress(f"{self.name} generation {st['generation']}{of}: best {fitness.of(top):.2f} {top!r}")
            save({"phase": "generation", **record, "population": st["population"]})

        meta: dict[str, Any] = {"generations": st["generation"], "stopped": st.get("stopped"), "init": cfg.init,
                                "scored": len(fitness.scored),
                                "fitness_split": cfg.fitness_split, "fitness_size": len(fitness.examples),
                                "parses": dict(tally)}
        if not st["population"]:  # out of budget before anything was scored
            return OptimizeResult(best=PromptCandidate(text=cfg.initial_instruction), cost=ctx.cost, meta=meta)
        ranked = fitness.rank(st["population"])
        if cfg.fitness_split == "dev" and len(fitness.examples) == len(dev):
            meta["dev_accuracy"] = fitness.accuracy(ranked[0])
        cands = tuple(PromptCandidate(text=t, score=fitness.of(t)) for t in ranked)
        return OptimizeResult(best=cands[0], candidates=cands, cost=ctx.cost, meta=meta)

    # ------------------------------------------------------------------ initial population
    def initial_population(self, st: dict[str, Any], fitness: Fitness, ctx: OptimizeContext, tally: Counter) -> dict[str, Any]:
        """Score the starting prompts (the seed, or the pool and keep its best half), then add paraphrases."""
        cfg = self.config
        starts = [cfg.initial_instruction] if cfg.init == "seed" else list(TRIGGER_POOL)
        kept: list[str] = []
        for text in dedupe(starts):
            if ctx.out_of_budget():
                break
            kept.append(fitness.add(text))
        if cfg.init == "pool":
            kept = fitness.rank(kept)[: cfg.popsize // 2]
        st["population"] = list(kept)
        if not kept or ctx.out_of_budget():
            return {"kept": kept, "paraphrases": []}
        per_prompt = 1 if cfg.init == "pool" else cfg.popsize - 1
        how = Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens, n=per_prompt)
        metas = [VARIATION_PROMPT.format(instruction=t) for t in kept]
        replies = ask(ctx, metas, how, lambda r: parse_tagged(r, VARIATION_TAG, max_chars=cfg.max_prompt_chars), tally)
        paraphrases = dedupe((p for ps in replies for p in ps), seen=kept)
        for text in paraphrases[: cfg.popsize - len(kept)]:
            if ctx.out_of_budget():
                break
            st["population"].append(fitness.add(text))
        if len(st["population"]) < cfg.popsize:
            tally["short initial population"] += 1
        return {"kept": kept, "paraphrases": paraphrases}

    # ------------------------------------------------------------------ proposals
    def parse_operator(self, reply: str) -> Parsed:
        return parse_operator_reply(reply, self.config.max_prompt_chars)

    def accept(self, got: list[str], tally: Counter) -> str | None:
        """The operator's child, or None: unparseable (already counted) or a copy of the worked example."""
        if not got:
            return None
        if DEMO_GUARD(got[0]):
            tally["rejected: copies the worked example"] += 1
            return None
        return got[0]

    def generation(self, st: dict[str, Any], fitness: Fitness, ctx: OptimizeContext, tally: Counter) -> dict[str, Any]:
        raise NotImplementedError


class EvoPromptGA(EvoPrompt):
    name = "evoprompt-ga"
    config: GaConfig

    def generation(self, st: dict[str, Any], fitness: Fitness, ctx: OptimizeContext, tally: Counter) -> dict[str, Any]:
        """Select parents, ask for `popsize` crossover-and-mutate children, keep the best `popsize` of all."""
        cfg = self.config
        population = st["population"]
        parents = self.select(population, fitness, ctx.rng, tally)
        pairs = [ctx.rng.sample(parents, 2) for _ in range(cfg.popsize)]
        metas = [GA_PROMPT.format(prompt1=a, prompt2=b) for a, b in pairs]
        replies = ask(ctx, metas, Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens), self.parse_operator, tally)
        children: list[str] = []
        for got in replies:
            child = self.accept(got, tally)
            if child is not None:
                if ctx.out_of_budget():  # only children already scored are merged
                    break
                children.append(fitness.add(child))
        merged = dedupe([*population, *children])
        if len(merged) < cfg.popsize:  # refill from the best other prompts scored so far
            merged += dedupe(fitness.rank([t for t, _ in fitness.scored]), seen=merged)[: cfg.popsize - len(merged)]
        st["population"] = fitness.rank(merged)[: cfg.popsize]
        return {"parents": pairs, "children": [[c, fitness.of(c)] for c in children]}

    def select(self, population: list[str], fitness: Fitness, rng: Any, tally: Counter) -> list[str]:
        """The parent pool: `popsize` roulette-wheel draws, `popsize` two-member tournaments, or the population."""
        cfg = self.config
        if cfg.selection == "random":
            return list(population) if len(population) >= 2 else list(population) * 2
        if cfg.selection == "tour":
            return [max(rng.sample(population, 2) if len(population) >= 2 else population, key=fitness.of)
                    for _ in range(cfg.popsize)]
        parents, uniform = roulette(population, [fitness.of(p) for p in population], cfg.popsize, rng)
        if uniform:
            tally["uniform wheel (all fitness 0)"] += 1
        return parents


class EvoPromptDE(EvoPrompt):
    name = "evoprompt-de"
    config: DeConfig

    def generation(self, st: dict[str, Any], fitness: Fitness, ctx: OptimizeContext, tally: Counter) -> dict[str, Any]:
        """For each member in turn: donors, one operator call, and one-to-one survival of member or trial."""
        cfg = self.config
        population = list(st["population"])
        survivors, slots = list(population), []
        for j, member in enumerate(population):
            if ctx.out_of_budget():  # slots not reached keep their member
                break
            others = population[:j] + population[j + 1 :]
            if len(others) >= 3:
                a, b, c = ctx.rng.sample(others, 3)
            else:
                tally["donors drawn with replacement"] += 1
                a, b, c = ctx.rng.choices(others or [member], k=3)
            if cfg.donor == "best":
                c = fitness.best()  # updated within the generation, as in the reference
            meta = DE_PROMPT.format(prompt1=a, prompt2=b, prompt3=c, prompt0=member)
            [got] = ask(ctx, [meta], Ask(temperature=cfg.temperature, max_tokens=cfg.max_tokens), self.parse_operator, tally)
            trial = self.accept(got, tally)
            slot: dict[str, Any] = {"member": member, "donors": [a, b, c], "trial": trial}
            if trial is not None and not ctx.out_of_budget():
                trial = slot["trial"] = fitness.add(trial)
                slot["trial_score"] = fitness.of(trial)
                if fitness.of(trial) > fitness.of(member):  # ties keep the member
                    survivors[j] = trial
            slots.append({**slot, "kept": survivors[j]})
        st["population"] = survivors
        return {"slots": slots}


def make_ga(preset: str = "cpu", **overrides: Any) -> EvoPromptGA:
    """EvoPrompt-GA (Guo et al. 2024): an LLM crosses over and mutates roulette-selected prompts; the fittest survive."""
    return EvoPromptGA(configure("evoprompt-ga", GA_PRESETS, preset, overrides))


def make_de(preset: str = "cpu", **overrides: Any) -> EvoPromptDE:
    """EvoPrompt-DE (Guo et al. 2024): an LLM mutates prompt differences into the best prompt (differential evolution)."""
    return EvoPromptDE(configure("evoprompt-de", DE_PRESETS, preset, overrides))
