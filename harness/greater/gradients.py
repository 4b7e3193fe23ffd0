"""Token-level machinery of GReaTer (harness/greater/optimizer.py holds the algorithm): sequences, losses, passes.

One training sequence per example is laid out exactly as the evaluator renders it (`build_prompt`,
`with_extractor`, the model's chat template), then cut into token segments so that the optimized prompt
tokens sit at known indices:

    [head: template + question ...][fixed prefix "Use"][prompt tokens][tail: ... reasoning, extractor][answer]

The answer tokens are found by character offsets of the tokenized tail (a BPE merge such as "$A" puts the
"$" into the first answer token; searching token ids would miss it).

Two passes use the model (parameters frozen throughout):
- `gradient_pass`: one batched forward + backward (in micro-batches, gradients accumulated) gives the
  proposal distribution at `cursor` (logits at `cursor-1`) and g = dLoss/d(embedding at `cursor`); the score of a
  candidate c is E[c] . g. LM-head logits are computed only at the positions that need them.
- re-scoring of re-generated sequences (harness.greater.rescoring).

Every tensor made here is made on the model's device (`model_device`); what leaves torch is read back as Python
numbers and lists (gradients and proposal logits stay tensors on that device).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.types import Example, PromptPosition
from harness.evaluation.evaluate import build_prompt, with_extractor

MARK = "\ue000"  # a private-use character standing in for the instruction while the layout is rendered
ALLOWED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,")


# ------------------------------------------------------------------------------------ sequences


@dataclass(frozen=True)
class Row:
    """One tokenized training sequence (see the module docstring)."""

    ids: tuple[int, ...]
    prompt_start: int  # index of the first optimized prompt token
    prompt_len: int
    answer_at: tuple[int, ...]  # indices of the answer tokens
    option_ids: tuple[int, ...] = ()  # first answer token of each allowed answer ((): no options reading)
    gold_option: int = -1  # index of the gold answer in option_ids

    def slot(self, cursor: int) -> int:
        return self.prompt_start + cursor


def answer_token_span(offsets: Sequence[tuple[int, int]], answer_start: int) -> int:
    """Index of the first token that covers any character at or after `answer_start`.

    Tokens from there to the end are the answer tokens; when the tokenizer merged the answer with the
    text before it ("$A"), the merged token counts as an answer token.
    """
    for j, (s, e) in enumerate(offsets):
        if e > answer_start and e > s:
            return j
    raise ValueError("the answer has no tokens")


class Layout:
    """Builds `Row`s for one model, prompt position and fixed prefix."""

    def __init__(self, gradient_model: Any, position: PromptPosition | str, fixed_prefix: str) -> None:
        self.gm = gradient_model
        self.tok = gradient_model.tokenizer
        self.position = PromptPosition(position)
        self.fixed_prefix = fixed_prefix
        # When the text before the instruction ends with a space (the paper's layout: "question Use ...";
        # a base model's "Answer: Use ..."), the space belongs to the prefix segment (" Use"), where a joint
        # tokenization of the whole text puts it.
        probe = self.gm.render(build_prompt(Example(id="", input="q", target=""), MARK, self.position))
        self.lead = " " if probe.split(MARK)[0].endswith(" ") else ""
        self.prefix_ids = self._ids(self.lead + fixed_prefix) if (self.lead + fixed_prefix) else []

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    # the instruction text for a prompt: what every backend and the evaluator see
    def instruction(self, prompt_ids: Sequence[int]) -> str:
        return self.fixed_prefix + self.tok.decode(list(prompt_ids))

    def initial_ids(self, text: str) -> list[int]:
        return self._ids((" " + text) if self.fixed_prefix else text)

    def round_trips(self, prompt_ids: Sequence[int]) -> bool:
        """True when the prompt's text tokenizes back to the same ids (the decoding model sees these)."""
        text = self.lead + self.instruction(prompt_ids)
        return self._ids(text) == self.prefix_ids + list(prompt_ids)

    def row(
        self,
        example: Example,
        prompt_ids: Sequence[int],
        reasoning: str,
        extractor: str,
        answer: str,
        options: Sequence[str] = (),
    ) -> Row:
        chat = with_extractor(build_prompt(example, MARK, self.position), reasoning, extractor)
        text = self.gm.render(chat)
        if text.count(MARK) != 1:
            raise ValueError("the instruction marker must appear exactly once in the rendered text")
        before, after = text.split(MARK)
        if self.lead:
            if not before.endswith(self.lead):
                raise ValueError("expected a space before the instruction")
            before = before[: -len(self.lead)]
        head = self.gm.encode(before)
        tail_ids, first = self._tail(after, answer)
        start = len(head) + len(self.prefix_ids)
        ids = [*head, *self.prefix_ids, *prompt_ids, *tail_ids]
        base = start + len(prompt_ids)
        answer_at = tuple(range(base + first, base + len(tail_ids)))
        option_ids, gold = self._options(after, answer, options, tail_ids[:first])
        return Row(tuple(ids), start, len(prompt_ids), answer_at, option_ids, gold)

    def _tail(self, after: str, answer: str) -> tuple[list[int], int]:
        enc = self.tok(after + answer, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], answer_token_span(enc["offset_mapping"], len(after))

    def _options(self, after: str, answer: str, options: Sequence[str], context: list[int]) -> tuple[tuple[int, ...], int]:
        """First answer token of each option, if all share the gold's context tokens and are distinct."""
        if answer not in options:
            return (), -1
        firsts = []
        for o in options:
            ids, first = self._tail(after, o)
            if ids[:first] != context:
                return (), -1
            firsts.append(ids[first])
        if len(set(firsts)) != len(firsts):
            return (), -1
        return tuple(firsts), list(options).index(answer)


def allowed_token_mask(tokenizer: Any, device: Any = None) -> Any:
    """Bool tensor over the vocabulary, on `device` (the model's): tokens made only of ASCII letters, spaces,
    "." and ",", not whitespace-only, never special tokens (greater.md, step 2)."""
    import torch

    n = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    ok = [
        i not in special and bool(t.strip()) and all(ch in ALLOWED_CHARS for ch in t)
        for i, t in enumerate(texts)
    ]
    return torch.tensor(ok, dtype=torch.bool, device=device)


# ------------------------------------------------------------------------------------ losses


@dataclass
class RowScore:
    """What one sequence says about its prompt: answer loss, fluency, and the two mistake readings."""

    answer_loss: float
    fluency: float  # mean NLL of the prompt tokens
    mistake_greedy: bool  # any teacher-forced argmax answer token differs from the gold one
    mistake_options: bool | None  # the argmax over the allowed answers' first tokens is not the gold one

    def mistake(self, reading: str) -> bool:
        if reading == "options" and self.mistake_options is not None:
            return self.mistake_options
        return self.mistake_greedy


def row_losses(row: Row, answer_logits: Any, prompt_logits: Any, *, temperature: float, loss: str) -> tuple[Any, Any, RowScore]:
    """Differentiable answer CE (at `temperature`; over the full vocabulary or the allowed answers only)
    and prompt NLL of one row, plus its plain-number `RowScore`.

    `answer_logits[j]` predicts `row.ids[row.answer_at[j]]`; `prompt_logits[j]` predicts prompt token j.
    """
    import torch
    import torch.nn.functional as F

    dev = answer_logits.device
    gold = torch.tensor([row.ids[a] for a in row.answer_at], device=dev)
    prompt = torch.tensor(row.ids[row.prompt_start : row.prompt_start + row.prompt_len], device=dev)
    answer_logits, prompt_logits = at_least_f32(answer_logits), at_least_f32(prompt_logits)
    use_options = loss == "options" and row.option_ids
    if use_options:
        restricted = answer_logits[0, list(row.option_ids)]
        answer_loss = F.cross_entropy((restricted / temperature)[None], torch.tensor([row.gold_option], device=dev))
    else:
        answer_loss = F.cross_entropy(answer_logits / temperature, gold)
    fluency = F.cross_entropy(prompt_logits, prompt)
    with torch.no_grad():
        greedy = bool((answer_logits.argmax(-1) != gold).any())
        options = None
        if row.option_ids:
            options = int(answer_logits[0, list(row.option_ids)].argmax()) != row.gold_option
    return answer_loss, fluency, RowScore(float(answer_loss.detach()), float(fluency.detach()), greedy, options)


def model_device(model: Any) -> Any:
    """Where the model's inputs go: the device of its input embeddings."""
    return model.get_input_embeddings().weight.device


def at_least_f32(x: Any) -> Any:
    import torch

    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def lm_head(model: Any, hidden: Any) -> Any:
    """Logits for a (M, d) contiguous block of last hidden states (never the whole sequence)."""
    logits = model.get_output_embeddings()(hidden.contiguous())
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        import torch

        logits = torch.tanh(logits / cap) * cap
    return logits


def needed_positions(row: Row) -> tuple[list[int], list[int]]:
    """Positions whose logits predict the answer tokens, and the prompt tokens."""
    return [a - 1 for a in row.answer_at], [row.prompt_start - 1 + j for j in range(row.prompt_len)]


# ------------------------------------------------------------------------------------ gradient pass


@dataclass
class GradResult:
    grad: Any  # (d,) dLoss/d(embedding at cursor), summed over rows
    proposal_logits: Any  # (N, V) logits at cursor-1, row order kept
    scores: list[RowScore]  # the current prompt's per-row scores (for free: the same forward)
    loss: float
    tokens: int  # sequence tokens run forward and backward


def forward_loss(model: Any, rows: Sequence[Row], cursor: int, slot_embedding: Any = None, *, temperature: float,
                 fluency_weight: float, loss: str) -> tuple[Any, Any, list[RowScore]]:
    """Summed loss of `rows`, with `slot_embedding` (d,) placed at prompt token `cursor` of every row
    (None: the rows' own tokens everywhere).

    Returns (loss tensor, proposal logits (B, V) at cursor-1, per-row scores). Right padding: real tokens never
    attend to pads after them and keep positions 0..len-1, so each row equals its unpadded forward.
    """
    import torch

    emb = model.get_input_embeddings().weight
    dev = emb.device
    width = max(len(r.ids) for r in rows)
    ids = torch.tensor([[*r.ids, *[0] * (width - len(r.ids))] for r in rows], dtype=torch.long, device=dev)
    mask = torch.tensor([[1] * len(r.ids) + [0] * (width - len(r.ids)) for r in rows], dtype=torch.long, device=dev)
    slots = torch.tensor([r.slot(cursor) for r in rows], device=dev)
    rows_ix = torch.arange(len(rows), device=dev)
    with torch.no_grad():
        embeds = emb[ids]
    if slot_embedding is not None:
        embeds = embeds.index_put((rows_ix, slots), slot_embedding.to(embeds.dtype).expand(len(rows), -1))
    hidden = model.get_decoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    # one contiguous gather of every needed position, then the LM head on that block only
    spans, cols, owners = [], [], []
    for i, r in enumerate(rows):
        ans, prm = needed_positions(r)
        spans.append((len(cols), len(ans), len(prm)))
        cols += ans + prm
        owners += [i] * (len(ans) + len(prm))
    logits = lm_head(model, hidden[torch.tensor(owners, device=dev), torch.tensor(cols, device=dev)])
    total, scores, proposal = 0.0, [], []
    for i, r in enumerate(rows):
        at, n_ans, n_prm = spans[i]
        a_logits = logits[at : at + n_ans]
        p_logits = logits[at + n_ans : at + n_ans + n_prm]
        a_loss, flu, score = row_losses(r, a_logits, p_logits, temperature=temperature, loss=loss)
        total = total + a_loss + fluency_weight * flu
        scores.append(score)
        proposal.append(p_logits[cursor].detach())  # the logits at cursor-1 predict the token at cursor
    return total, torch.stack(proposal), scores


def gradient_pass(model: Any, rows: Sequence[Row], cursor: int, current_id: int, *, temperature: float,
                  fluency_weight: float, loss: str, micro_batch: int = 4) -> GradResult:
    """One forward + backward over all rows (micro-batches of similar length, gradients accumulated)."""
    import torch

    emb = model.get_input_embeddings().weight
    e = emb[current_id].detach().clone().requires_grad_(True)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
    proposal: list[Any] = [None] * len(rows)
    scores: list[Any] = [None] * len(rows)
    total = 0.0
    with torch.enable_grad():
        for start in range(0, len(order), micro_batch):
            chunk = order[start : start + micro_batch]
            value, prop, sc = forward_loss(model, [rows[i] for i in chunk], cursor, e, temperature=temperature,
                                           fluency_weight=fluency_weight, loss=loss)
            value.backward()
            total += float(value.detach())
            for j, i in enumerate(chunk):
                proposal[i], scores[i] = prop[j], sc[j]
    return GradResult(e.grad.detach(), torch.stack(proposal), scores, total, sum(len(r.ids) for r in rows))


def candidate_scores(model: Any, candidates: Sequence[int], grad: Any) -> list[float]:
    """The one-hot gradient over the candidate set: E[C] . g, normalised by its L2 norm (lower is better)."""
    emb = model.get_input_embeddings().weight
    s = at_least_f32(emb[list(candidates)]) @ at_least_f32(grad)
    norm = s.norm()
    return (s / norm if norm > 0 else s).tolist()


# ------------------------------------------------------------------------------------ proposal


@dataclass
class Proposal:
    candidates: list[int]
    k: int  # the k that gave at least `min_candidates`
    rejected_retokenize: int = 0
    draws: list[list[int]] = field(default_factory=list)


def propose(proposal_logits: Any, allowed: Any, previous_id: int | None, *, k: int, intersections: int,
            per_intersection: int, min_candidates: int, k_growth: int, rng: Any,
            keep: Callable[[int], bool] = lambda _t: True) -> Proposal:
    """Candidate tokens: each row's top-k allowed tokens; the union of `intersections` intersections of
    `per_intersection` random rows' top-k sets; k grows by `k_growth` until at least `min_candidates`.

    `previous_id` (the token at cursor-1) is never proposed; `keep` is an extra filter (round trip).
    """
    import torch

    logits = at_least_f32(proposal_logits).clone()
    mask = allowed.to(logits.device, copy=True)
    if previous_id is not None:
        mask[previous_id] = False
    logits[:, ~mask] = float("-inf")
    n_allowed = int(mask.sum())
    n_rows = logits.shape[0]
    m = min(per_intersection, n_rows)
    k = min(k, n_allowed)
    while True:
        top = torch.topk(logits, k, dim=-1).indices.tolist()
        sets = [set(t) for t in top]
        union: set[int] = set()
        draws = []
        for _ in range(intersections):
            pick = sorted(rng.sample(range(n_rows), m))
            draws.append(pick)
            union |= set.intersection(*(sets[i] for i in pick))
        kept = sorted(t for t in union if keep(t))
        if len(kept) >= min_candidates or k >= n_allowed:
            return Proposal(kept, k, len(union) - len(kept), draws)
        k = min(k + k_growth, n_allowed)
