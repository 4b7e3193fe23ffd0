"""GReaTer's re-scoring: the top candidates' regenerated sequences scored without gradients.

Two ways, the same numbers up to float rounding (tests/test_greater.py):
- `score_rows` (the gradient model): a forward of every sequence; the question + prompt[:cursor] prefix is
  shared by every candidate of one example, so its KV cache is computed once and the candidates continue from it.
- `score_rows_by_decoder` (the task model, `options` loss and mistakes only): the allowed answers'
  log-probabilities after each generation from the decoding backend (vLLM serves them from its prefix cache),
  and the prompt tokens' fluency from a forward of the text up to the prompt's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.greater.gradients import Row, RowScore, at_least_f32, forward_loss, lm_head, model_device, needed_positions, row_losses


def score_candidates(model: Any, decoder: Any, rows: dict[int, list[Row]], cursor: int, *, temperature: float, loss: str,
                     prefix_cache: bool, by_decoder: bool) -> tuple[str, dict[int, list[RowScore]], int]:
    """Scores of each candidate's rows (one per training example, the same order for every candidate): by the
    task model (`score_rows_by_decoder`) when `by_decoder` and every row has its allowed answers, else by the
    gradient model (`score_rows`, the rows of one example sharing the question + prompt[:cursor] prefix).
    Returns (which model scored: "task_model" or "gradient_model", scores per candidate, tokens run)."""
    cands = list(rows)
    flat = [r for c in cands for r in rows[c]]
    n = len(rows[cands[0]])
    if by_decoder and all(r.option_ids for r in flat):
        by_row, tokens = score_rows_by_decoder(model, decoder, flat, temperature=temperature)
        return "task_model", {c: by_row[j * n : (j + 1) * n] for j, c in enumerate(cands)}, tokens
    groups = [[rows[c][i] for c in cands] for i in range(n)]
    per_example, tokens = score_rows(model, groups, [g[0].slot(cursor) for g in groups], temperature=temperature,
                                     loss=loss, prefix_cache=prefix_cache)
    return "gradient_model", {c: [s[j] for s in per_example] for j, c in enumerate(cands)}, tokens


def score_rows(model: Any, groups: Sequence[Sequence[Row]], shared: Sequence[int], *, temperature: float,
               loss: str, prefix_cache: bool = True, batch_size: int = 8) -> tuple[list[list[RowScore]], int]:
    """No-grad scores of every row; `groups[i]` are rows that share their first `shared[i]` tokens.

    With `prefix_cache`, the shared prefix of a group runs once and its KV cache is repeated for the
    group's rows, which continue from it; otherwise every row runs in full. Returns the scores and the
    number of tokens run.
    """
    import torch

    out: list[list[RowScore]] = []
    tokens = 0
    with torch.no_grad():
        if not prefix_cache:
            flat = [r for g in groups for r in g]
            scores: list[RowScore] = []
            for start in range(0, len(flat), batch_size):
                chunk = flat[start : start + batch_size]
                _, _, sc = forward_loss(model, chunk, 0, temperature=temperature, fluency_weight=0.0, loss=loss)
                scores += sc
                tokens += sum(len(r.ids) for r in chunk)
            it = iter(scores)
            return [[next(it) for _ in g] for g in groups], tokens
        for rows, s in zip(groups, shared):
            out.append(_score_group(model, list(rows), s, temperature=temperature, loss=loss))
            tokens += s + sum(len(r.ids) - s for r in rows)
    return out, tokens


def _score_group(model: Any, rows: list[Row], shared: int, *, temperature: float, loss: str) -> list[RowScore]:
    import torch

    for r in rows:
        if tuple(r.ids[:shared]) != tuple(rows[0].ids[:shared]) or len(r.ids) <= shared:
            raise ValueError("rows of a group must share their prefix and extend past it")
    decoder = model.get_decoder()
    dev = model_device(model)
    prefix = torch.tensor([rows[0].ids[:shared]], device=dev)
    pre = decoder(input_ids=prefix, use_cache=True)
    cache = pre.past_key_values
    if len(rows) > 1:
        cache.batch_repeat_interleave(len(rows))
    width = max(len(r.ids) for r in rows) - shared
    pads = [shared + width - len(r.ids) for r in rows]
    ids = torch.tensor([[*r.ids[shared:], *[0] * p] for r, p in zip(rows, pads)], dtype=torch.long, device=dev)
    mask = torch.tensor([[1] * len(r.ids) + [0] * p for r, p in zip(rows, pads)], dtype=torch.long, device=dev)
    suffix = decoder(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True).last_hidden_state
    prefix_hidden = pre.last_hidden_state[0]
    scores = []
    for i, r in enumerate(rows):
        ans, prm = needed_positions(r)
        cols = ans + prm
        hidden = torch.stack([prefix_hidden[c] if c < shared else suffix[i, c - shared] for c in cols])
        logits = lm_head(model, hidden)
        _, _, sc = row_losses(r, logits[: len(ans)], logits[len(ans) :], temperature=temperature, loss=loss)
        scores.append(sc)
    return scores


def score_rows_by_decoder(model: Any, decoder: Any, rows: Sequence[Row], *, temperature: float) -> tuple[list[RowScore], int]:
    """Scores of rows whose answers are read over the allowed answers (`options` loss and mistakes), taken from
    the decoding backend instead of a forward over every whole sequence.

    The answer: `decoder.next_token_logprobs` at the first answer position, for the allowed answers' first
    tokens (vLLM serves it from its prefix cache: the question, prompt and reasoning were just generated, so
    only the extractor's tokens are new). The options CE at `temperature` is exact from log-probabilities
    (the normaliser cancels). The fluency (prompt tokens' NLL) comes from the gradient model's forward of the
    text up to the prompt's end, once per distinct such prefix (with the prompt before the question, one per
    candidate). `mistake_greedy` compares the first answer token only. Returns the scores and the tokens run.
    """
    import torch
    import torch.nn.functional as F

    if any(not r.option_ids for r in rows):
        raise ValueError("decoder re-scoring needs every row's allowed answers")
    answers = decoder.next_token_logprobs([r.ids[: r.answer_at[0]] for r in rows], [list(r.option_ids) for r in rows])
    prefixes = {r.ids[: r.prompt_start + r.prompt_len]: r for r in rows}
    nll = _prompt_nll(model, list(prefixes.values()))
    scores = []
    for r, (lps, greedy) in zip(rows, answers):
        lp = torch.tensor(lps, dtype=torch.float64)
        loss = float(-F.log_softmax(lp / temperature, dim=0)[r.gold_option])
        options = int(lp.argmax()) != r.gold_option
        scores.append(RowScore(loss, nll[r.ids[: r.prompt_start + r.prompt_len]], greedy != r.ids[r.answer_at[0]], options))
    tokens = sum(len(k) for k in prefixes) + sum(len(r.ids) - r.prompt_start for r in rows)  # upper bound for vLLM
    return scores, tokens


def _prompt_nll(model: Any, rows: Sequence[Row]) -> dict[tuple[int, ...], float]:
    """Mean NLL of each row's prompt tokens given what precedes them, keyed by the ids up to the prompt's end."""
    import torch
    import torch.nn.functional as F

    dev = model_device(model)
    out = {}
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            chunk = rows[start : start + 8]
            cut = [r.prompt_start + r.prompt_len for r in chunk]
            width = max(cut)
            ids = torch.tensor([[*r.ids[:c], *[0] * (width - c)] for r, c in zip(chunk, cut)], dtype=torch.long, device=dev)
            mask = torch.tensor([[1] * c + [0] * (width - c) for c in cut], dtype=torch.long, device=dev)
            hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            for i, (r, c) in enumerate(zip(chunk, cut)):
                at = torch.arange(r.prompt_start - 1, c - 1, device=dev)
                logits = at_least_f32(lm_head(model, hidden[i, at]))
                gold = torch.tensor(r.ids[r.prompt_start : c], device=dev)
                out[tuple(r.ids[:c])] = float(F.cross_entropy(logits, gold))
    return out
