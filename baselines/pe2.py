"""PE2 (Ye et al., ACL Findings 2024): beam search over one instruction, where the optimizer LLM analyses the
instruction's failures in a detailed two-stage meta-prompt before it rewrites the instruction.

The run starts from one instruction (zero-shot CoT, as the reference's BBH `prompt.md`), scored on dev. Each
round:
1. beam: the `beam` prompts with the highest dev accuracy over every round so far (backtracking; ties: the
   older prompt);
2. failures: each beam prompt answers the train split in one fixed shuffled order, `mine_chunk` examples at a
   time, until it has `ceil(batch * max(expand, 2) / 2)` wrong answers (remembered: a prompt chosen again
   costs nothing);
3. `expand` proposals per beam prompt, each from `batch` of those failures (hard batching: failures only).
   Stage 1 shows the task description, the current prompt, the full template the task model sees (the input
   as a placeholder: where the prompt sits), the failures with the model's reasoning, its answer and the
   label, and asks for a five-question form per example; stage 2 shows all of that plus the stage-1 answer and
   asks for the new prompt, under `max_words` words;
4. children not seen before are scored on dev.
It stops after `rounds` rounds or when a prompt reaches dev accuracy 1.0, and returns the best prompt by dev
accuracy over all rounds (the initial one included: PE2 returns it when nothing beats it). Under a budget
(`--budget`) rounds go on until the budget is used (pe2-evoprompt.md, "scale by budget, not by steps"), or
until `stall_rounds` rounds in a row added no new prompt (a harness guard: an optimizer whose replies never
parse would otherwise loop on remembered, free work).

Departures from the released code (INK-USC/PE2 @ 7167520), for the README:
- One user turn per generation. The reference is a multi-turn chat (a generic system line, the description,
  a scripted assistant acknowledgement, the material, stage 1, the stage-2 request); the harness's Generator
  takes one user turn, so stage 1 is sent as description + material + form, and stage 2 as the same text
  followed by the stage-1 answer (quoted as the model's own) and the stage-2 request. The system line and the
  acknowledgement are left out.
- Delimited output. Stage 2 asks for the prompt between <PROMPT> tags (the reference takes the whole
  completion). Read: the tagged span; else a reply that is one short paragraph (lead-ins, code fences and
  quotes stripped); else a parse failure (`cost.unparseable`; no child, the calls stay charged).
- Guards, each counted in `meta["parses"]`: a prompt longer than `max_prompt_chars` (about twice the word
  limit) is cut at a sentence end; a child equal to its parent, one holding template scaffolding ("Q:", "A:",
  "Label:") or one sharing 8 words with a train or dev input (a run found in at most 2% of the inputs: a
  leaked example, not the task's common wording) is dropped. The reference keeps every child.
- Duplicates are found by normalised text (case, spacing, end punctuation), not the exact string.
- Failure mining: the shuffled order comes from the run's seed (the reference: a fixed random_state 42).
- Task model: the harness's shared evaluation (one reasoning pass, then the task's extractor) instead of
  the reference's two-pass zero-shot CoT with its own answer trigger; the reasoning shown per failure is cut
  to `reasoning_chars` characters; examples are numbered by their id (the reference: the data-frame row).
- The examples block states how many examples it holds (the reference states `batch_size` even when it
  found fewer failures).
- `rounds` counts expansion rounds; the reference's `train_steps` counts evaluation rounds (4 = 3 expansions).
  Under a budget it is not a limit: rounds go on until the budget is used or `stall_rounds` rounds in a row
  added no prompt (the reference has no budget; pe2-evoprompt.md asks for budget scaling).
- Not implemented: momentum, the pasted tutorials and induction initialisation (all off for BBH PE2), and
  the inspector meta-prompt (never loaded by the reference's PE2 trainer). The step-size limit is a config
  field, off as in the reference.
- The proposals of a round are asked in one batch per stage; every sampled call gets its seed from the run's
  RNG. The `cpu` preset caps stage 1 at 256 tokens (reference: 1500) for a 135M optimizer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from baselines.common import Ask, Outcomes, ask, configure, sample, snapshot
from baselines.parsing import CopyGuard, Parsed, clean_text, normalise, parse_tagged
from baselines.pe2_prompts import (
    EXAMPLE_BLOCK,
    INPUT_SLOT,
    NO_ANALYSIS,
    NO_EXAMPLES,
    RULE_FIX,
    RULE_LENGTH,
    RULE_STEP_SIZE,
    STAGE1_PROMPT,
    STAGE2_PROMPT,
    TASK_DESCRIPTION,
    TEMPLATE_ANSWER,
)
from harness.core.context import OptimizeContext
from harness.core.types import (
    ZERO_SHOT_COT,
    BenchError,
    Example,
    Needs,
    OptimizeResult,
    PromptCandidate,
    PromptPosition,
    Task,
)
from harness.evaluation.evaluate import build_prompt

TAG = "PROMPT"
BATCHINGS = ("hard", "random", "hard_weighted")
COPY_WORDS = 8  # a run this long shared with a task input is a copy
_FENCE = re.compile(r"```[A-Za-z]*")
_SCAFFOLDING = re.compile(r"(?:^|\s)(?:Q|A):\s|\blabel\s*:", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Pe2Config:
    beam: int = 4  # n_beam: example_scripts/bbh_boolean_expressions.sh (cli.py default 2)
    expand: int = 4  # n_expand: same script (cli.py default 2)
    rounds: int = 3  # expansion rounds: the script's --train_steps 4 = 3 expansions (cli.py default 10)
    batch: int = 2  # failures per proposal: cli.py --batch_size
    batching: str = "hard"  # cli.py --batching: "hard" (failures), "random" (any example), "hard_weighted"
    backtrack: bool = True  # beam over every round's prompts: the scripts' --backtrack
    max_words: int = 50  # the length the proposer is told: cli.py --prompt_max_tokens, meta_prompts/pe2/proposer.md
    step_size: int | None = None  # words the proposer may change (off): cli.py --step_size, --optim_use_step_size
    analysis_temperature: float = 0.5  # stage 1: meta_prompts/pe2/proposer.md
    analysis_tokens: int = 1500  # stage 1: meta_prompts/pe2/proposer.md
    rewrite_temperature: float = 0.7  # stage 2: meta_prompts/pe2/proposer.md
    rewrite_tokens: int = 300  # stage 2: meta_prompts/pe2/proposer.md
    mine_chunk: int = 20  # train examples answered per mining chunk: run_till_enough_errors (called from trainer/default_trainer.py)
    dev_size: int | None = None  # dev examples every prompt is scored on (None: all; the reference's BBH dev is 100)
    initial_instruction: str = ZERO_SHOT_COT  # data/bbh/*/prompt.md (--init_method file)
    reasoning_chars: int = 2000  # reasoning shown per failure (the reference shows it all: <= 400 tokens, model/zeroshotcot.py)
    max_prompt_chars: int = 600  # harness guard: proposals are cut here (about twice max_words)
    stall_rounds: int = 3  # harness guard under a budget: this many rounds without a new prompt end the search

    def __post_init__(self) -> None:
        for name in ("beam", "expand", "rounds", "batch", "max_words", "analysis_tokens", "rewrite_tokens",
                     "mine_chunk", "reasoning_chars", "max_prompt_chars", "stall_rounds"):
            if getattr(self, name) < 1:
                raise BenchError(f"pe2: {name} must be at least 1")
        for name in ("step_size", "dev_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise BenchError(f"pe2: {name} must be at least 1 (or None)")
        if self.analysis_temperature < 0 or self.rewrite_temperature < 0:
            raise BenchError("pe2: temperatures must be >= 0")
        if self.batching not in BATCHINGS:
            raise BenchError(f"pe2: batching must be one of {', '.join(BATCHINGS)}, not {self.batching!r}")

    @property
    def failures_wanted(self) -> int:
        """How many failures mining looks for per beam prompt (the reference's batch_size * max(n_expand, 2) / 2)."""
        return math.ceil(self.batch * max(self.expand, 2) / 2)


PRESETS = {
    # The released BBH script (and the paper's n = m = 4, T = 3): beam 4, 4 children per beam prompt, 3
    # expansion rounds (<= 1 + 4 + 16 + 16 = 37 prompts scored on the whole dev split), 2 failures per proposal.
    "paper": Pe2Config(),
    # One BBH task with smollm2-135m optimizing itself on 2 cores, 128-token reasoning, in ~10-15 min: beam 2,
    # 2 children each, 3 rounds (<= 1 + 2 + 4 + 4 = 11 prompts on 16 dev examples = 176 scored answers) plus
    # mining in chunks of 8 (~5 beam prompts, ~40-80 answers); 2 batched optimizer calls per round, stage 1
    # capped at 256 tokens, stage 2 at 96.
    "cpu": Pe2Config(beam=2, expand=2, rounds=3, mine_chunk=8, dev_size=16, analysis_tokens=256,
                     rewrite_tokens=96, reasoning_chars=400),
    # Well under a second with scripted models (tests): beam 2, 2 children, 2 rounds, 4 dev examples.
    "smoke": Pe2Config(beam=2, expand=2, rounds=2, mine_chunk=4, dev_size=4, analysis_tokens=40,
                       rewrite_tokens=40, reasoning_chars=200),
}


def render_template(prompt: str, position: PromptPosition | str) -> str:
    """The task model's template with the prompt in place and the input as a placeholder (where the prompt
    sits is what the optimizer must see): the evaluator's own layout."""
    p = build_prompt(Example(id="", input=INPUT_SLOT, target=""), prompt, position)
    return f"Q: {p.user}\nA: {p.assistant_prefix + ' ' if p.assistant_prefix else ''}{TEMPLATE_ANSWER}"


def format_examples(batch: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The examples block: per example its id, input, the model's reasoning and answer, and the label."""
    blocks = [
        EXAMPLE_BLOCK.format(id=ex_id, input=r["input"], reasoning=r["reasoning"] or "(empty)",
                             prediction=r["prediction"] or "(none found)", gold=r["gold"])
        for ex_id, r in batch
    ]
    return "\n\n".join(blocks) or NO_EXAMPLES


def parse_proposal(reply: str, max_chars: int) -> Parsed:
    """The new prompt: the <PROMPT> span, else a reply that is one short paragraph, else a failure."""
    if re.search(rf"<\s*/?\s*{TAG}\s*>", reply, re.IGNORECASE):
        return parse_tagged(reply, TAG, untagged=False, max_chars=max_chars)
    paragraphs = [clean_text(p, max_chars) for p in re.split(r"\n\s*\n", _FENCE.sub("", reply))]
    kept = [(text, capped) for text, capped in paragraphs if text]  # a lead-in alone cleans to nothing
    if len(kept) != 1 or kept[0][1]:  # several paragraphs, or one too long: not a bare prompt
        return Parsed(None, "failed")
    return Parsed(kept[0][0], "untagged")


def _read_analysis(reply: str) -> Parsed:
    """Stage 1's answer, as written (the form is often not followed: that is kept, never repaired)."""
    text = reply.strip()
    return Parsed(text or NO_ANALYSIS, "analysis" if text else "analysis-empty")


class Pe2:
    name = "pe2"
    needs = Needs(optimizer_llm=True)  # an LLM writes its prompts (the task model unless the run names another)

    def __init__(self, config: Pe2Config) -> None:
        self.config = config

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        cfg = self.config
        by_id = {ex.id: ex for ex in [*train, *dev]}
        mining = Outcomes(task, ctx, keep_reasoning=True, reasoning_chars=cfg.reasoning_chars)
        inputs = [ex.input for ex in [*train, *dev]]
        guard = CopyGuard(inputs, n=COPY_WORDS, max_sources=max(1, len(inputs) // 50))
        state = ctx.resume()
        if state is None:
            dev_set = sample(ctx.rng, dev, cfg.dev_size) if cfg.dev_size else list(dev)
            order = sample(ctx.rng, train, len(train))  # the one mining order every prompt walks
            st: dict[str, Any] = {
                "round": 0, "dev": [ex.id for ex in dev_set], "order": [ex.id for ex in order], "stopped": None,
                "nodes": [{"id": 0, "parent": None, "round": 0, "prompt": cfg.initial_instruction, "dev": None}],
                "tally": {},
            }
        else:
            st = state
            mining.from_state(st["mining"])
        dev_set, order = [by_id[i] for i in st["dev"]], [by_id[i] for i in st["order"]]
        tally = Counter(st["tally"])

        of = "" if ctx.budget.limited else f"/{cfg.rounds}"  # under a budget, rounds go on until it is used

        def save(record: dict[str, Any]) -> None:
            st["tally"], st["mining"] = dict(tally), mining.to_state()
            ctx.log_step({"method": self.name, "round": st["round"], **record}, snapshot(st))

        while not ctx.out_of_budget():
            pending = [n for n in st["nodes"] if n["dev"] is None]
            if pending:  # score the newest prompts (the initial one first) on dev
                scored = []
                for node in pending:
                    if ctx.out_of_budget():
                        break
                    node["dev"] = ctx.score(task, dev_set, node["prompt"] or None).accuracy
                    scored.append([node["id"], node["dev"]])
                best = _ranked(st["nodes"], ctx)[0]
                if best["dev"] >= 1.0:
                    st["stopped"] = "dev accuracy 1.0"
                ctx.progress(f"pe2 round {st['round']}{of}: scored {len(scored)}; "
                             f"best dev {best['dev']:.2f} {best['prompt']!r}")
                save({"phase": "score", "scored": scored, "dev_accuracy": best["dev"],
                      "selection_score": ctx.selection_score(best["prompt"], best["dev"])})
                continue
            if st["stopped"] or (st["round"] >= cfg.rounds and not ctx.budget.limited):
                break
            if st.get("stall", 0) >= cfg.stall_rounds:
                st["stopped"] = f"no new prompt in {cfg.stall_rounds} rounds"
                break
            record = self.expand(st, order, mining, guard, ctx, tally)
            st["round"] += 1
            st["stall"] = 0 if any(c.get("id") is not None for c in record["children"]) else st.get("stall", 0) + 1
            save({"phase": "expand", **record})

        ranked = _ranked(st["nodes"], ctx)
        meta: dict[str, Any] = {"rounds": st["round"], "prompts": len(st["nodes"]), "scored": len(ranked),
                                "stopped": st["stopped"], "parses": dict(tally), "dev_size": len(dev_set)}
        if not ranked:  # out of budget before the initial prompt was scored
            return OptimizeResult(best=PromptCandidate(text=cfg.initial_instruction), cost=ctx.cost, meta=meta)
        meta["dev_accuracy" if len(dev_set) == len(dev) else "dev_subset_accuracy"] = ranked[0]["dev"]
        cands = tuple(PromptCandidate(text=n["prompt"], score=n["dev"], meta={"round": n["round"], "parent": n["parent"]})
                      for n in ranked[:10])
        return OptimizeResult(best=cands[0], candidates=cands, cost=ctx.cost, meta=meta)

    # ------------------------------------------------------------------ one round of expansion
    def expand(
        self, st: dict[str, Any], order: list[Example], mining: Outcomes, guard: CopyGuard, ctx: OptimizeContext,
        tally: Counter,
    ) -> dict[str, Any]:
        """Mine the beam's failures, ask for `expand` proposals per beam prompt, and add the new prompts (unscored)
        to `st["nodes"]`. Returns the step record."""
        cfg = self.config
        newest = max(n["round"] for n in st["nodes"])
        beam = _ranked([n for n in st["nodes"] if cfg.backtrack or n["round"] == newest], ctx)[: cfg.beam]
        mined: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        for node in beam:
            if ctx.out_of_budget():
                break
            mined[node["id"]] = self.mine(node["prompt"], order, mining, ctx)
        record: dict[str, Any] = {"beam": [n["id"] for n in beam],
                                  "train_used": {str(k): len(v) for k, v in mined.items()}}
        if beam and mined.get(beam[0]["id"]):  # the shared curve key: the best prompt's mined train accuracy
            first = mined[beam[0]["id"]]
            record["train_accuracy"] = sum(r["correct"] for _, r in first) / len(first)
        if not beam or ctx.out_of_budget():
            return {**record, "children": [], "stopped": "budget" if beam else "no scored prompt to expand"}

        jobs = [(node, self.failure_batch(mined[node["id"]], ctx.rng)) for node in beam for _ in range(cfg.expand)]
        stage1 = [
            STAGE1_PROMPT.format(description=TASK_DESCRIPTION.format(n=len(batch)), prompt=node["prompt"],
                                 template=render_template(node["prompt"], ctx.position), examples=format_examples(batch))
            for node, batch in jobs
        ]
        analyses = ask(ctx, stage1, Ask(temperature=cfg.analysis_temperature, max_tokens=cfg.analysis_tokens),
                       _read_analysis, tally)
        if ctx.out_of_budget():
            return {**record, "children": [], "stopped": "budget"}
        stage2 = [
            STAGE2_PROMPT.format(stage1=s1, analysis=analysis[0], prompt=node["prompt"], rules=self.rules())
            for s1, analysis, (node, _) in zip(stage1, analyses, jobs)
        ]
        proposals = ask(ctx, stage2, Ask(temperature=cfg.rewrite_temperature, max_tokens=cfg.rewrite_tokens),
                        lambda reply: parse_proposal(reply, cfg.max_prompt_chars), tally)

        children = []
        for (node, batch), analysis, got in zip(jobs, analyses, proposals):
            text = got[0] if got else None
            verdict = "unparseable" if text is None else self.verdict(text, node["prompt"], st["nodes"], guard)
            child = {"parent": node["id"], "prompt": text, "verdict": verdict, "batch": [i for i, _ in batch],
                     "analysis": analysis[0]}
            if verdict == "new":
                st["nodes"].append({"id": len(st["nodes"]), "parent": node["id"], "round": st["round"] + 1,
                                    "prompt": text, "dev": None})
                child["id"] = st["nodes"][-1]["id"]
            elif verdict != "unparseable":
                tally[verdict] += 1
            children.append(child)
        return {**record, "children": children}

    def mine(self, prompt: str, order: list[Example], mining: Outcomes, ctx: OptimizeContext) -> list[tuple[str, dict[str, Any]]]:
        """The prompt's outcomes along the mining order, a chunk at a time, until it has failed
        `failures_wanted` times or the split ends (outcomes are remembered: walking it again is free)."""
        cfg = self.config
        out: list[tuple[str, dict[str, Any]]] = []
        for start in range(0, len(order), cfg.mine_chunk):
            if sum(not r["correct"] for _, r in out) >= cfg.failures_wanted or ctx.out_of_budget():
                break
            chunk = order[start : start + cfg.mine_chunk]
            out += [(ex.id, r) for ex, r in zip(chunk, mining.records(prompt, chunk))]
        return out

    def failure_batch(self, mined: list[tuple[str, dict[str, Any]]], rng: Any) -> list[tuple[str, dict[str, Any]]]:
        """The examples one proposal sees: `batch` failures ("hard"), any mined examples ("random"), or failures
        drawn with replacement ("hard_weighted")."""
        cfg = self.config
        if cfg.batching == "random":
            return sample(rng, mined, cfg.batch)
        failures = [m for m in mined if not m[1]["correct"]]
        if cfg.batching == "hard_weighted":
            return [rng.choice(failures) for _ in range(cfg.batch)] if failures else []
        return sample(rng, failures, cfg.batch)

    def rules(self) -> str:
        cfg = self.config
        step = [RULE_STEP_SIZE.format(n=cfg.step_size)] if cfg.step_size else []
        return "\n".join([*step, RULE_LENGTH.format(n=cfg.max_words), RULE_FIX])

    def verdict(self, text: str, parent: str, nodes: list[dict[str, Any]], guard: CopyGuard) -> str:
        """The verdict on a parsed proposal: "new", or why it is dropped (counted in the tally)."""
        if normalise(text) == normalise(parent):
            return "rejected: unchanged"
        if _SCAFFOLDING.search(text):
            return "rejected: template scaffolding"
        if guard(text):
            return "rejected: copies a task input"
        if normalise(text) in {normalise(n["prompt"]) for n in nodes}:
            return "duplicate"
        return "new"


def _ranked(nodes: list[dict[str, Any]], ctx: OptimizeContext) -> list[dict[str, Any]]:
    """The scored prompts by dev accuracy (less the run's length penalty: `OptimizeContext.selection_score`), best
    first; ties keep creation order (the older prompt wins)."""
    return sorted((n for n in nodes if n["dev"] is not None), key=lambda n: -ctx.selection_score(n["prompt"], n["dev"]))


def make(preset: str = "cpu", **overrides: Any) -> Pe2:
    """PE2 (Ye et al. 2024): beam search; an LLM analyses failures shown in the full template, then rewrites the prompt."""
    return Pe2(configure("pe2", PRESETS, preset, overrides))
