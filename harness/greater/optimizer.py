"""GReaTer: gradients over reasoning make a small model its own prompt optimizer (Das et al., ICLR 2025).

Read top to bottom: the config and presets, then `Greater.optimize` (the loop), then one step
(`GreaterRun.step`): gradient pass -> candidates -> re-scoring -> advance. The token-level
machinery (sequence layout, losses, the two model passes) is in `harness.greater.gradients`; the specification
is ../shared/reference/greater.md (docs/greater.md lists where this implementation departs from the
reference code and why).

Per step, with N training examples:
1. the current prompt's reasoning is the previous step's winner's (generated once, never twice);
2. one batched forward + backward over [question, "Use" + prompt, reasoning, extractor, gold answer] gives
   the model's next-token distribution at `pos` (candidates) and g = dLoss/d(embedding at `pos`), where
   Loss = CE(answer logits / 0.2) + 0.2 x prompt NLL; a candidate's score is E[c] . g;
3. the 3 best candidates by gradient get their reasoning regenerated through the task model (the decoding
   backend, behind the response cache) and are scored by mistake rate + 0.02 x prompt NLL, computed from
   one forward per example that continues the shared question + prompt[:pos] KV cache;
4. the winner replaces the token; `pos` moves right, wraps after a sentence end or grows the prompt.
The 10 best prompts by training score are kept; the final prompt is the best of them on dev.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
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

if TYPE_CHECKING:
    import torch

    from harness.greater.gradients import Layout

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
    prefix_cache: bool = True  # re-scoring continues the shared question + prompt[:pos] KV cache
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


def make(preset: str = "cpu", **overrides: Any) -> Greater:
    """GReaTer (Das et al. 2025): token-by-token prompt edits ranked by gradients of the answer loss over the model's own reasoning."""
    return Greater(config_for(preset, **overrides))


# ------------------------------------------------------------------------------------------ optimizer


@dataclass
class Scored:
    """A prompt scored on the training examples (by re-generated reasoning, teacher-forced answers)."""

    ids: list[int]
    text: str
    mistake_rate: float
    answer_loss: float
    fluency: float
    score: float  # the paper's: mistake rate + 0.02 x mean prompt NLL (lower is better)
    key: list[float]  # what selection sorts by (tie_break)
    reasoning: list[str] = dataclasses.field(default_factory=list, repr=False)
    reasoning_tokens: list[int] = dataclasses.field(default_factory=list, repr=False)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("reasoning", "reasoning_tokens")}


class Greater:
    name = "greater"
    needs = Needs(gradients=True)  # the runner hands it an HF model (ctx.gradient_model) beside the decoding backend

    def __init__(self, config: GreaterConfig | None = None) -> None:
        self.config = config or GreaterConfig()

    # ------------------------------------------------------------------ the loop
    def optimize(self, task: Task, train: Sequence[Example], dev: Sequence[Example], ctx: OptimizeContext) -> OptimizeResult:
        cfg = self.config
        run = self.prepare(task, train, ctx)
        state = ctx.resume()
        if state is not None:
            ctx.progress(f"greater: resumed after step {state['next_step']} of {cfg.steps}")
        else:  # a budget spent before the start costs nothing more: the initial prompt is returned
            state = run.initial_state(reason=not ctx.out_of_budget())
        stopped = "steps"
        while state["next_step"] < cfg.steps and "dev" not in state:
            if ctx.out_of_budget():
                stopped = "budget"
                break
            record, state = run.step(state)
            ctx.log_step(record, state)
            ctx.progress(
                f"greater step {record['index'] + 1}/{cfg.steps} pos {record['position']} "
                f"train error {record['train_error']:.2f} -> {record['chosen']['mistake_rate']:.2f}: {record['prompt']}"
            )

        top = [Scored(**d) for d in state["top"]]  # best first by training score
        if not top:  # stopped before the first step: the initial prompt is the only one
            top = [Scored(ids=state["prompt_ids"], text=run.layout.instruction(state["prompt_ids"]), mistake_rate=None,
                          answer_loss=None, fluency=None, score=None, key=[])]
        if "dev" not in state and not ctx.out_of_budget():
            state = {**state, "dev": self._dev_select(task, dev, top, ctx)}
            dev_best = max(d["accuracy"] for d in state["dev"])
            chosen = max(ctx.selection_score(d["text"], d["accuracy"]) for d in state["dev"])
            ctx.log_step({"kind": "dev_selection", "dev": state["dev"], "dev_accuracy": dev_best, "selection_score": chosen}, state)
        # out of budget: no dev selection; the best training score wins (the harness scores it on dev)
        dev_acc = [d["accuracy"] for d in state["dev"]] if "dev" in state else [None] * len(top)
        # the final choice by dev accuracy, less the run's length penalty (`OptimizeContext.selection_score`)
        # ties: the better training score
        best = max(range(len(top)), key=lambda i: (ctx.selection_score(top[i].text, dev_acc[i] or 0.0), -i))
        history = [s for s in ctx.steps if s.get("kind") == "step"]
        return OptimizeResult(
            best=PromptCandidate(text=top[best].text, score=dev_acc[best], meta=top[best].public()),
            candidates=tuple(
                PromptCandidate(text=t.text, score=a, meta={**t.public(), "dev_accuracy": a}) for t, a in zip(top, dev_acc)
            ),
            cost=ctx.cost,
            meta={
                "dev_accuracy": dev_acc[best],
                "dev_n": state["dev"][best]["n"] if "dev" in state else 0,
                "variants": run.variants,
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
        from harness.greater.gradients import Layout, allowed_token_mask

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
        return GreaterRun(cfg=cfg, task=task, examples=examples, ctx=ctx, layout=Layout(gm, position, cfg.fixed_prefix),
                          model=gm.model, allowed=allowed_token_mask(gm.tokenizer, device=gm.model.device),
                          variants=self._variants(task, ctx, position))

    def _variants(self, task: Task, ctx: OptimizeContext, position: PromptPosition) -> dict[str, Any]:
        cfg = self.config
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
        return {"mistake": mistake, "loss": loss, "tie_break": cfg.tie_break, "position": position.value,
                "prefix_cache": cfg.prefix_cache, "rescore_with": rescore_with, "notes": notes}

    def _dev_select(self, task: Task, dev: Sequence[Example], top: list[Scored], ctx: OptimizeContext) -> list[dict[str, Any]]:
        rows = list(dev[: self.config.dev_limit] if self.config.dev_limit else dev)
        out = []
        for i, cand in enumerate(top):
            ctx.progress(f"greater: dev selection {i + 1}/{len(top)}: {cand.text}")
            res = ctx.score(task, rows, cand.text)
            out.append({"text": cand.text, "accuracy": res.accuracy, "n": len(rows),
                        "mean_reasoning_tokens": res.mean_reasoning_tokens})
        return out


# ------------------------------------------------------------------------------------------ one step


@dataclass
class GreaterRun:
    """The fixed parts of one run (examples, layout, model, variants); `step(state)` does one step and
    returns its record and the state to continue from (plain JSON: the step log's checkpoint)."""

    cfg: GreaterConfig
    task: Task
    examples: list[Example]
    ctx: OptimizeContext
    layout: Layout
    model: Any  # the transformers module of ctx.gradient_model
    allowed: torch.Tensor  # vocabulary mask of tokens a prompt may contain
    variants: dict[str, Any]

    def initial_state(self, reason: bool = True) -> dict[str, Any]:
        ids = self.layout.initial_ids(self.cfg.initial_prompt)
        reasoning, lengths = self.reason([ids])[0] if reason else ([], [])
        return {"next_step": 0, "prompt_ids": ids, "pos": 0, "grown": False, "reasoning": reasoning,
                "reasoning_tokens": lengths, "top": []}

    def reason(self, prompts: list[list[int]]) -> list[tuple[list[str], list[int]]]:
        """Greedy reasoning for every (prompt, example) through the task model, in one batched call."""
        texts = [self.layout.instruction(p) for p in prompts]
        chats = [build_prompt(ex, t, self.ctx.position) for t in texts for ex in self.examples]
        params = GenParams(temperature=0.0, max_tokens=self.cfg.train_reasoning_tokens, seed=self.ctx.seed)
        gens = self.ctx.task_model.generate(chats, params)
        n = len(self.examples)
        return [([g.text for g in gens[i * n : (i + 1) * n]], [len(g.samples[0].token_ids) for g in gens[i * n : (i + 1) * n]])
                for i in range(len(prompts))]

    def rows(self, prompt_ids: list[int], reasoning: list[str]) -> list[Any]:
        return [
            self.layout.row(ex, prompt_ids, r, self.task.extractor(ex), ex.target, self.task.options_for(ex))
            for ex, r in zip(self.examples, reasoning)
        ]

    def summarise(self, ids: list[int], scores: list[Any], reasoning: list[str], lengths: list[int]) -> Scored:
        cfg, n = self.cfg, len(scores)
        mistakes = sum(s.mistake(self.variants["mistake"]) for s in scores) / n
        answer = sum(s.answer_loss for s in scores) / n
        fluency = sum(s.fluency for s in scores) / n
        score = mistakes + cfg.select_fluency_weight * fluency
        key = [score] if cfg.tie_break == "fluency" else [mistakes, answer + cfg.select_fluency_weight * fluency]
        return Scored(ids=list(ids), text=self.layout.instruction(ids), mistake_rate=mistakes, answer_loss=answer,
                      fluency=fluency, score=score, key=key, reasoning=list(reasoning), reasoning_tokens=list(lengths))

    def step(self, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        from harness.greater.gradients import candidate_scores, gradient_pass, propose
        from harness.greater.rescoring import score_rows, score_rows_by_decoder

        cfg, ctx, lay = self.cfg, self.ctx, self.layout
        ids, pos = list(state["prompt_ids"]), state["pos"]
        seconds: dict[str, float] = {}
        tokens: dict[str, int] = {}

        # 1-3. one forward + backward: proposal logits at pos-1, gradient at pos, the current prompt's scores
        t0 = time.perf_counter()
        rows = self.rows(ids, state["reasoning"])
        grad = gradient_pass(self.model, rows, pos, ids[pos], temperature=cfg.answer_temperature,
                             fluency_weight=cfg.fluency_weight, loss=self.variants["loss"],
                             micro_batch=cfg.grad_micro_batch)
        ctx.cost.forward_passes += len(rows)
        ctx.cost.backward_passes += len(rows)
        tokens["gradient"] = grad.tokens
        current = self.summarise(ids, grad.scores, state["reasoning"], state["reasoning_tokens"])
        seconds["gradient"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        previous = ids[pos - 1] if pos > 0 else (lay.prefix_ids[-1] if lay.prefix_ids else None)

        def round_trips(token: int) -> bool:
            return not cfg.round_trip or lay.round_trips(ids[:pos] + [token] + ids[pos + 1 :])

        prop = propose(grad.proposal_logits, self.allowed, previous, k=cfg.top_k, intersections=cfg.intersections,
                       per_intersection=cfg.per_intersection, min_candidates=cfg.min_candidates,
                       k_growth=cfg.k_growth, rng=ctx.rng, keep=round_trips)
        cands = list(prop.candidates)
        if not state["grown"] and ids[pos] not in cands:
            cands.append(ids[pos])  # the current token competes too (not a placeholder)
        scores = candidate_scores(self.model, cands, grad.grad)
        ranked = sorted(range(len(cands)), key=lambda j: (scores[j], cands[j]))
        top = [cands[j] for j in ranked[: cfg.rescore_top]]
        dot = early_pick([lay.tok.decode([c]) for c in top], pos, len(ids)) if cfg.early_accept else None
        early = top[dot] if dot is not None else None
        if early is not None:
            top = [early]  # accepted at once: only its reasoning is generated (for the next step)
        seconds["candidates"] = time.perf_counter() - t0

        # 4. re-score: regenerate reasoning (task model, cached), then one forward per example that
        # continues the shared question + prompt[:pos] KV cache for every candidate
        t0 = time.perf_counter()
        variants = {c: ids[:pos] + [c] + ids[pos + 1 :] for c in top}
        fresh = [c for c in top if not (c == ids[pos] and not state["grown"])]
        generated = dict(zip(fresh, self.reason([variants[c] for c in fresh]))) if fresh else {}
        seconds["generation"] = time.perf_counter() - t0
        tokens["generated"] = sum(sum(v[1]) for v in generated.values())

        t0 = time.perf_counter()
        results: dict[int, Scored] = {}
        if not (state["grown"] or ids[pos] not in top):
            results[ids[pos]] = current  # same prompt, same reasoning: the gradient pass scored it
        rescored_by = None
        if fresh:
            cand_rows = {c: self.rows(variants[c], generated[c][0]) for c in fresh}
            flat = [r for c in fresh for r in cand_rows[c]]
            n = len(self.examples)
            if self.variants["rescore_with"] == "task_model" and all(r.option_ids for r in flat):
                rescored_by = "task_model"
                by_row, n_tok = score_rows_by_decoder(self.model, ctx.task_model, flat, temperature=cfg.answer_temperature)
                per_candidate = {c: by_row[j * n : (j + 1) * n] for j, c in enumerate(fresh)}
            else:
                rescored_by = "gradient_model"
                groups = [[cand_rows[c][i] for c in fresh] for i in range(n)]
                shared = [r[0].slot(pos) for r in groups]
                per_example, n_tok = score_rows(self.model, groups, shared, temperature=cfg.answer_temperature,
                                                loss=self.variants["loss"], prefix_cache=cfg.prefix_cache)
                per_candidate = {c: [s[j] for s in per_example] for j, c in enumerate(fresh)}
            ctx.cost.forward_passes += len(flat)
            tokens["rescoring"] = n_tok
            for c in fresh:
                results[c] = self.summarise(variants[c], per_candidate[c], *generated[c])
        seconds["rescoring"] = time.perf_counter() - t0

        # 5. choose, keep the best prompts, advance
        chosen_id = early if early is not None else min(top, key=lambda c: (results[c].key, top.index(c)))
        chosen = results[chosen_id]
        pool = [Scored(**d) for d in state["top"]]
        pool += ([] if state["grown"] else [current]) + [results[c] for c in top]
        kept = _best(pool, cfg.keep)

        placeholder = lay.tok(cfg.placeholder, add_special_tokens=False)["input_ids"][-1]
        new_ids, new_pos, grown = advance(chosen.ids, pos, lay.tok.decode([chosen_id]), placeholder, cfg.max_prompt_tokens)
        record = {
            "kind": "step",
            "index": state["next_step"],
            "position": pos,
            "prompt_before": current.text,
            "train_error": current.mistake_rate,
            "train_accuracy": 1 - current.mistake_rate,  # the shared curve key (OptimizeContext.log_step)
            "loss": grad.loss / len(rows),
            "k": prop.k,
            "candidates": [{"id": c, "token": lay.tok.decode([c]), "grad_score": s} for c, s in zip(cands, scores)],
            "dropped_round_trip": prop.rejected_retokenize,
            "rescored": [{"id": c, "token": lay.tok.decode([c]), **results[c].public(),
                          "reasoning_tokens": _mean(results[c].reasoning_tokens)} for c in top],
            "early_accept": early is not None,
            "rescored_by": rescored_by,
            "chosen": {"id": chosen_id, "token": lay.tok.decode([chosen_id]), **chosen.public()},
            "prompt": chosen.text,
            "reasoning_tokens": _mean(state["reasoning_tokens"]),
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "tokens": tokens,
        }
        new_state = {
            "next_step": state["next_step"] + 1,
            "prompt_ids": new_ids,
            "pos": new_pos,
            "grown": grown,
            "reasoning": chosen.reasoning,  # the winner's reasoning is the next step's: no regeneration
            "reasoning_tokens": chosen.reasoning_tokens,
            "top": [s.public() for s in kept],  # texts and scores (reasoning stays out of the log)
        }
        return record, new_state


def early_pick(tokens: Sequence[str], pos: int, prompt_len: int) -> int | None:
    """Reference-code rule: in the second half of the prompt, the first top candidate containing "."
    (it ends a sentence) is accepted without comparing the others. Returns its index, or None."""
    if 2 * pos < prompt_len:
        return None
    return next((j for j, t in enumerate(tokens) if "." in t), None)


def advance(ids: Sequence[int], pos: int, chosen: str, placeholder: int, max_len: int) -> tuple[list[int], int, bool]:
    """Next position: left to right; at the end of the prompt wrap to 0 if the chosen token ends a sentence
    (or the prompt is `max_len` long), else append a placeholder so the prompt grows. -> (ids, pos, grown)"""
    ids, pos = list(ids), pos + 1
    if pos < len(ids):
        return ids, pos, False
    if chosen.rstrip().endswith(".") or len(ids) >= max_len:
        return ids, 0, False
    return ids + [placeholder], pos, True


def _best(pool: list[Scored], keep: int) -> list[Scored]:
    """The `keep` best distinct prompts by selection key (first seen wins among equal texts)."""
    out: dict[str, Scored] = {}
    for s in sorted(pool, key=lambda s: s.key):
        out.setdefault(s.text, s)
    return list(out.values())[:keep]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
