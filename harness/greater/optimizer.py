"""GReaTer: gradients over reasoning make a small model its own prompt optimizer (Das et al., ICLR 2025).

Read top to bottom: `Greater.optimize` (the loop), then one step (`GreaterRun.step`) in four phases over the typed
state (`harness.greater.state`) at its `cursor`, the index of the prompt token being edited (settings:
`harness.greater.config`; token machinery: `gradients`, `rescoring`; specification: ../shared/reference/greater.md,
departures: docs/greater.md):
1. propose: the current prompt's reasoning is the last winner's; one batched forward + backward over [question,
   "Use" + prompt, reasoning, extractor, gold answer] gives the model's next-token distribution at the cursor
   (candidates) and g = dLoss/d(embedding at the cursor), Loss = CE(answer logits / 0.2) + 0.2 x prompt NLL;
2. score: a candidate's gradient score is E[c] . g (lower is better); the 3 best form the shortlist;
3. rescore: the shortlist's reasoning is regenerated through the task model and each prompt gets its selection
   loss, mistake rate + 0.02 x prompt NLL (lower is better), from one forward per example;
4. advance: the winner replaces the token; the cursor moves right, wraps after a sentence end or grows the prompt.
The 10 prompts of lowest selection loss are kept; the final prompt is the best of them by dev accuracy.
The cursor is `position` in a step record (`pos` in the logged state).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.core.context import OptimizeContext
from harness.core.types import (
    BenchError,
    Example,
    GenParams,
    Needs,
    OptimizeResult,
    PromptCandidate,
    PromptPosition,
    Task,
)
from harness.evaluation.evaluate import build_prompt
from harness.greater import gradients, rescoring
from harness.greater.config import GreaterConfig, Variants, config_for, resolve_variants
from harness.greater.state import ScoredPrompt, SearchState

if TYPE_CHECKING:
    import torch


def make(preset: str = "cpu", **overrides: Any) -> Greater:
    """GReaTer (Das et al. 2025): token-by-token prompt edits ranked by gradients of the answer loss over the model's own reasoning."""
    return Greater(config_for(preset, **overrides))


# ------------------------------------------------------------------------------------------ the loop


class Greater:
    name = "greater"
    needs = Needs(gradients=True)  # the runner hands it an HF model (ctx.gradient_model) beside the decoding backend

    def __init__(self, config: GreaterConfig | None = None) -> None:
        self.config = config or GreaterConfig()

    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        cfg = self.config
        run = self.prepare(task, train, ctx)
        saved = ctx.resume()
        if saved is not None:
            state = SearchState.from_json(saved)
            ctx.progress(f"greater: resumed after step {state.next_step} of {cfg.steps}")
        else:  # a budget spent before the start costs nothing more: the initial prompt is returned
            state = run.initial_state(reason=not ctx.out_of_budget())
        stopped = "steps"
        while state.next_step < cfg.steps and state.dev is None:
            if ctx.out_of_budget():
                stopped = "budget"
                break
            record, state = run.step(state)
            ctx.log_step(record, state.to_json())
            ctx.progress(
                f"greater step {record['index'] + 1}/{cfg.steps} pos {record['position']} "
                f"train error {record['train_error']:.2f} -> {record['chosen']['mistake_rate']:.2f}: {record['prompt']}"
            )

        kept = state.kept  # best first by selection loss
        if not kept:  # stopped before the first step: the initial prompt is the only one
            kept = [ScoredPrompt(ids=state.prompt_ids, text=run.layout.instruction(state.prompt_ids), mistake_rate=None,
                                 answer_loss=None, fluency=None, selection_loss=None, key=[])]
        if state.dev is None and not ctx.out_of_budget():
            state.dev = self._dev_select(task, dev, kept, ctx)
            dev_best = max(d["accuracy"] for d in state.dev)
            chosen = max(ctx.selection_score(d["text"], d["accuracy"]) for d in state.dev)
            ctx.log_step({"kind": "dev_selection", "dev": state.dev, "dev_accuracy": dev_best, "selection_score": chosen},
                         state.to_json())
        # out of budget: no dev selection; the best selection loss wins (the harness scores it on dev)
        dev_acc = [d["accuracy"] for d in state.dev] if state.dev is not None else [None] * len(kept)
        # the final choice by dev accuracy, less the run's length penalty (`OptimizeContext.selection_score`)
        # ties: the better selection loss
        best = max(range(len(kept)), key=lambda i: (ctx.selection_score(kept[i].text, dev_acc[i] or 0.0), -i))
        history = [s for s in ctx.steps if s.get("kind") == "step"]
        return OptimizeResult(
            best=PromptCandidate(text=kept[best].text, score=dev_acc[best], meta=kept[best].to_json()),
            candidates=tuple(
                PromptCandidate(text=t.text, score=a, meta={**t.to_json(), "dev_accuracy": a}) for t, a in zip(kept, dev_acc)
            ),
            cost=ctx.cost,
            meta={
                "dev_accuracy": dev_acc[best],
                "dev_n": state.dev[best]["n"] if state.dev is not None else 0,
                "variants": dataclasses.asdict(run.variants),
                "initial_prompt": run.layout.instruction(run.layout.initial_ids(cfg.initial_prompt)),
                "steps_done": len(history),
                "stopped": stopped,
                "reasoning_tokens_per_step": [s["reasoning_tokens"] for s in history],
                "train_error_per_step": [s["train_error"] for s in history],
                "prompt_per_step": [s["prompt"] for s in history],
                "seconds_per_step": [round(sum(s["seconds"].values()), 2) for s in history],
            },
        )

    def prepare(self, task: Task, train: Sequence[Example], ctx: OptimizeContext) -> GreaterRun:
        """Check the models, fix the training examples, the layout and the variants of one run."""
        cfg = self.config
        gm = ctx.gradient_model
        if gm is None or not hasattr(gm, "model"):
            raise BenchError("greater needs a gradient model: a Hugging Face model (backend hf) loaded in this process")
        examples = list(train[: cfg.n_train])
        if not examples:
            raise BenchError("greater needs training examples")
        position = PromptPosition(ctx.position)
        probe = build_prompt(examples[0], "Use x", position)
        if ctx.task_model.render(probe) != gm.render(probe):
            raise BenchError("greater: the task model and the gradient model render prompts differently; "
                             "use the same model and chat template for both")
        return GreaterRun(cfg=cfg, task=task, examples=examples, ctx=ctx,
                          layout=gradients.Layout(gm, position, cfg.fixed_prefix), model=gm.model,
                          allowed=gradients.allowed_token_mask(gm.tokenizer, device=gm.model.device),
                          variants=resolve_variants(cfg, task, ctx, position))

    def _dev_select(self, task: Task, dev: Sequence[Example], kept: list[ScoredPrompt], ctx: OptimizeContext) -> list[dict[str, Any]]:
        rows = list(dev[: self.config.dev_limit] if self.config.dev_limit else dev)
        out = []
        for i, cand in enumerate(kept):
            ctx.progress(f"greater: dev selection {i + 1}/{len(kept)}: {cand.text}")
            res = ctx.score(task, rows, cand.text)
            out.append({"text": cand.text, "accuracy": res.accuracy, "n": len(rows),
                        "mean_reasoning_tokens": res.mean_reasoning_tokens})
        return out


# ------------------------------------------------------------------------------------------ one step


class Clock:
    """Wall seconds and tokens per phase of one step (the step record's `seconds` and `tokens`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.tokens: dict[str, int] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0


@dataclass
class Step:
    """One step's values, filled by its phases in order (propose, score, rescore); `advance` reads them."""

    state: SearchState
    clock: Clock = field(default_factory=Clock)
    current: ScoredPrompt | None = None  # the current prompt, measured by the gradient pass
    gradient: Any = None  # dLoss/d(embedding at the cursor)
    gradient_loss: float = 0.0  # the gradient pass's loss per example
    proposal: gradients.Proposal | None = None
    candidates: list[int] = field(default_factory=list)  # proposed tokens (and the current one)
    grad_scores: list[float] = field(default_factory=list)  # E[c] . g per candidate, lower is better
    shortlist: list[int] = field(default_factory=list)  # the `rescore_top` best candidates by gradient score
    early: int | None = None  # a shortlisted token accepted at once (early accept)
    measured: dict[int, ScoredPrompt] = field(default_factory=dict)  # shortlisted token -> its prompt, measured
    rescored_by: str | None = None


@dataclass
class GreaterRun:
    """The fixed parts of one run (examples, layout, model, variants); `step(state)` does one step and
    returns its record and the state to continue from."""

    cfg: GreaterConfig
    task: Task
    examples: list[Example]
    ctx: OptimizeContext
    layout: gradients.Layout
    model: Any  # the transformers module of ctx.gradient_model
    allowed: torch.Tensor  # vocabulary mask of tokens a prompt may contain
    variants: Variants

    def initial_state(self, reason: bool = True) -> SearchState:
        ids = self.layout.initial_ids(self.cfg.initial_prompt)
        reasoning, lengths = self.reason([ids])[0] if reason else ([], [])
        return SearchState(next_step=0, prompt_ids=ids, cursor=0, grown=False, reasoning=reasoning,
                           reasoning_tokens=lengths, kept=[])

    def reason(self, prompts: list[list[int]]) -> list[tuple[list[str], list[int]]]:
        """Greedy reasoning for every (prompt, example) through the task model, in one batched call."""
        texts = [self.layout.instruction(p) for p in prompts]
        chats = [build_prompt(ex, t, self.ctx.position) for t in texts for ex in self.examples]
        params = GenParams(temperature=0.0, max_tokens=self.cfg.train_reasoning_tokens, seed=self.ctx.seed)
        gens = self.ctx.task_model.generate(chats, params)
        n = len(self.examples)
        return [([g.text for g in gens[i * n : (i + 1) * n]], [len(g.samples[0].token_ids) for g in gens[i * n : (i + 1) * n]])
                for i in range(len(prompts))]

    def rows(self, prompt_ids: list[int], reasoning: list[str]) -> list[gradients.Row]:
        return [
            self.layout.row(ex, prompt_ids, r, self.task.extractor(ex), ex.target, self.task.options_for(ex))
            for ex, r in zip(self.examples, reasoning)
        ]

    def summarise(self, ids: list[int], scores: list[gradients.RowScore], reasoning: list[str], lengths: list[int]) -> ScoredPrompt:
        """A prompt's measurement from its rows' scores: mistake rate, answer loss, fluency, selection loss."""
        cfg, n = self.cfg, len(scores)
        mistakes = sum(s.mistake(self.variants.mistake) for s in scores) / n
        answer = sum(s.answer_loss for s in scores) / n
        fluency = sum(s.fluency for s in scores) / n
        loss = mistakes + cfg.select_fluency_weight * fluency
        key = [loss] if cfg.tie_break == "fluency" else [mistakes, answer + cfg.select_fluency_weight * fluency]
        return ScoredPrompt(ids=list(ids), text=self.layout.instruction(ids), mistake_rate=mistakes, answer_loss=answer,
                            fluency=fluency, selection_loss=loss, key=key, reasoning=list(reasoning),
                            reasoning_tokens=list(lengths))

    def step(self, state: SearchState) -> tuple[dict[str, Any], SearchState]:
        """One step at the cursor. Returns its record (a row of the step log) and the state to continue from."""
        s = Step(state)
        self.propose(s)
        self.score(s)
        self.rescore(s)
        return self.advance(s)

    def propose(self, s: Step) -> None:
        """The model proposes: one forward + backward over every training sequence gives its own next-token
        distribution at the cursor, the gradient g at the cursor's embedding and the current prompt's
        measurement (the same forward); the candidates are the union of intersections of random examples'
        top-k allowed tokens (never the token before the cursor; only tokens whose prompt round-trips)."""
        cfg, lay, ids, cursor = self.cfg, self.layout, s.state.prompt_ids, s.state.cursor
        with s.clock("gradient"):
            rows = self.rows(ids, s.state.reasoning)
            grad = gradients.gradient_pass(self.model, rows, cursor, ids[cursor], temperature=cfg.answer_temperature,
                                           fluency_weight=cfg.fluency_weight, loss=self.variants.loss,
                                           micro_batch=cfg.grad_micro_batch)
            self.ctx.cost.forward_passes += len(rows)
            self.ctx.cost.backward_passes += len(rows)
            s.clock.tokens["gradient"] = grad.tokens
            s.current = self.summarise(ids, grad.scores, s.state.reasoning, s.state.reasoning_tokens)
            s.gradient, s.gradient_loss = grad.grad, grad.loss / len(rows)
        with s.clock("candidates"):
            previous = ids[cursor - 1] if cursor > 0 else (lay.prefix_ids[-1] if lay.prefix_ids else None)

            def round_trips(token: int) -> bool:
                return not cfg.round_trip or lay.round_trips(ids[:cursor] + [token] + ids[cursor + 1 :])

            s.proposal = gradients.propose(
                grad.proposal_logits, self.allowed, previous, k=cfg.top_k, intersections=cfg.intersections,
                per_intersection=cfg.per_intersection, min_candidates=cfg.min_candidates, k_growth=cfg.k_growth,
                rng=self.ctx.rng, keep=round_trips)

    def score(self, s: Step) -> None:
        """Candidates are ranked by gradient score E[c] . g (the loss's first-order change, lower is better); the
        current token competes too (unless it is a growth placeholder). The `rescore_top` best are shortlisted;
        in the prompt's second half a shortlisted token containing "." is accepted at once (early accept)."""
        cfg, ids, cursor = self.cfg, s.state.prompt_ids, s.state.cursor
        with s.clock("candidates"):
            s.candidates = list(s.proposal.candidates)
            if not s.state.grown and ids[cursor] not in s.candidates:
                s.candidates.append(ids[cursor])
            s.grad_scores = gradients.candidate_scores(self.model, s.candidates, s.gradient)
            ranked = sorted(range(len(s.candidates)), key=lambda j: (s.grad_scores[j], s.candidates[j]))
            s.shortlist = [s.candidates[j] for j in ranked[: cfg.rescore_top]]
            decoded = [self.layout.tok.decode([c]) for c in s.shortlist]
            dot = early_pick(decoded, cursor, len(ids)) if cfg.early_accept else None
            if dot is not None:
                s.early = s.shortlist[dot]
                s.shortlist = [s.early]  # only its reasoning is generated (for the next step)

    def rescore(self, s: Step) -> None:
        """Each shortlisted prompt's reasoning is regenerated through the task model, then the prompt is
        measured on it (mistake rate, answer loss, fluency: its selection loss). The current prompt keeps the
        gradient pass's measurement: same prompt, same reasoning."""
        cfg, ids, cursor = self.cfg, s.state.prompt_ids, s.state.cursor
        edited = {c: ids[:cursor] + [c] + ids[cursor + 1 :] for c in s.shortlist}
        fresh = [c for c in s.shortlist if not (c == ids[cursor] and not s.state.grown)]
        with s.clock("generation"):
            generated = dict(zip(fresh, self.reason([edited[c] for c in fresh]))) if fresh else {}
        s.clock.tokens["generated"] = sum(sum(lengths) for _, lengths in generated.values())
        with s.clock("rescoring"):
            if not (s.state.grown or ids[cursor] not in s.shortlist):
                s.measured[ids[cursor]] = s.current
            if fresh:
                rows = {c: self.rows(edited[c], generated[c][0]) for c in fresh}
                s.rescored_by, row_scores, s.clock.tokens["rescoring"] = rescoring.score_candidates(
                    self.model, self.ctx.task_model, rows, cursor, temperature=cfg.answer_temperature,
                    loss=self.variants.loss, prefix_cache=cfg.prefix_cache,
                    by_decoder=self.variants.rescore_with == "task_model")
                self.ctx.cost.forward_passes += sum(len(r) for r in rows.values())
                for c in fresh:
                    s.measured[c] = self.summarise(edited[c], row_scores[c], *generated[c])

    def advance(self, s: Step) -> tuple[dict[str, Any], SearchState]:
        """The winner (lowest selection key; ties: the better gradient score) replaces the token at the cursor;
        the `keep` best prompts so far are kept; the cursor moves right, wraps after a sentence end or grows the
        prompt by a placeholder. Returns the step's record and the next state."""
        cfg, st, tok = self.cfg, s.state, self.layout.tok
        shortlist, measured = s.shortlist, s.measured
        chosen_id = s.early if s.early is not None else min(shortlist, key=lambda c: (measured[c].key, shortlist.index(c)))
        chosen = measured[chosen_id]
        kept = _best(st.kept + ([] if st.grown else [s.current]) + [measured[c] for c in shortlist], cfg.keep)
        placeholder = tok(cfg.placeholder, add_special_tokens=False)["input_ids"][-1]
        ids, cursor, grown = move_cursor(chosen.ids, st.cursor, tok.decode([chosen_id]), placeholder, cfg.max_prompt_tokens)
        record = {
            "kind": "step",
            "index": st.next_step,
            "position": st.cursor,
            "prompt_before": s.current.text,
            "train_error": s.current.mistake_rate,
            "train_accuracy": 1 - s.current.mistake_rate,  # the shared curve key (OptimizeContext.log_step)
            "loss": s.gradient_loss,
            "k": s.proposal.k,
            "candidates": [{"id": c, "token": tok.decode([c]), "grad_score": g} for c, g in zip(s.candidates, s.grad_scores)],
            "dropped_round_trip": s.proposal.rejected_retokenize,
            "rescored": [{"id": c, "token": tok.decode([c]), **measured[c].to_json(),
                          "reasoning_tokens": _mean(measured[c].reasoning_tokens)} for c in shortlist],
            "early_accept": s.early is not None,
            "rescored_by": s.rescored_by,
            "chosen": {"id": chosen_id, "token": tok.decode([chosen_id]), **chosen.to_json()},
            "prompt": chosen.text,
            "reasoning_tokens": _mean(st.reasoning_tokens),
            "seconds": {k: round(v, 3) for k, v in s.clock.seconds.items()},
            "tokens": s.clock.tokens,
        }
        # the winner's reasoning is the next step's: no regeneration
        return record, SearchState(next_step=st.next_step + 1, prompt_ids=ids, cursor=cursor, grown=grown,
                                   reasoning=chosen.reasoning, reasoning_tokens=chosen.reasoning_tokens, kept=kept)


def early_pick(tokens: Sequence[str], cursor: int, prompt_len: int) -> int | None:
    """Reference-code rule: in the second half of the prompt, the first shortlisted token containing "."
    (it ends a sentence) is accepted without comparing the others. Returns its index, or None."""
    if 2 * cursor < prompt_len:
        return None
    return next((j for j, t in enumerate(tokens) if "." in t), None)


def move_cursor(ids: Sequence[int], cursor: int, chosen: str, placeholder: int, max_len: int) -> tuple[list[int], int, bool]:
    """Next cursor: left to right; at the end of the prompt wrap to 0 if the chosen token ends a sentence
    (or the prompt is `max_len` long), else append a placeholder so the prompt grows. -> (ids, cursor, grown)"""
    ids, cursor = list(ids), cursor + 1
    if cursor < len(ids):
        return ids, cursor, False
    if chosen.rstrip().endswith(".") or len(ids) >= max_len:
        return ids, 0, False
    return ids + [placeholder], cursor, True


def _best(pool: list[ScoredPrompt], keep: int) -> list[ScoredPrompt]:
    """The `keep` best distinct prompts by selection key (first seen wins among equal texts)."""
    out: dict[str, ScoredPrompt] = {}
    for s in sorted(pool, key=lambda s: s.key):
        out.setdefault(s.text, s)
    return list(out.values())[:keep]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
