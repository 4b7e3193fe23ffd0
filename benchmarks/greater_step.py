"""Time GReaTer steps: this project's pass structure against the reference code's, on the same inputs.

    python benchmarks/greater_step.py [--model smollm2-135m] [--task bbh:navigate] [--n 8]
        [--max-new-tokens 64] [--steps 1] [--position assistant] [--threads 2] [--naive/--no-naive]

Efficient (`harness.greater.optimizer`): the current reasoning is the previous winner's (not regenerated); one
batched forward+backward with frozen weights and LM-head logits only where needed gives the proposal and
the gradient; the 3 candidates' reasoning is generated in one batched call; re-scoring continues each
example's shared question + prompt[:pos] KV cache.

Naive (the reference code's structure, same maths): the current reasoning regenerated (N generations),
N batch-1 proposal forwards, N batch-1 forward+backward passes with every weight requiring a gradient,
full-vocabulary logits at every position and a one-hot over the whole vocabulary, then 3N candidate
generations at batch 1 and 3N full-length batch-1 forwards with full logits (no KV reuse).

Both start from the same state and RNG; the table says whether they chose the same token. Neither uses the
response cache (a warm cache would make either path's generations free). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from typing import Any


def naive_step(run: Any, state: dict[str, Any], gen1: Any) -> tuple[dict[str, Any], dict[str, float], dict[str, int]]:
    """One step with the reference code's pass structure. Returns (choice summary, seconds, counts)."""
    import torch

    from harness.greater.gradients import propose, row_losses

    cfg, lay, model = run.cfg, run.layout, run.model
    ids, pos = list(state["prompt_ids"]), state["pos"]
    sec: dict[str, float] = {}
    cnt = {"generations": 0, "forward_tokens": 0, "forwards": 0, "backwards": 0}
    kw = {"temperature": cfg.answer_temperature, "loss": run.variants["loss"]}

    def reason_batch1(prompt_ids: list[int]) -> tuple[list[str], list[int]]:
        saved = run.ctx.task_model
        run.ctx.task_model = gen1
        try:
            out = run.reason([prompt_ids])[0]
        finally:
            run.ctx.task_model = saved
        cnt["generations"] += len(run.examples)
        return out

    t0 = time.perf_counter()
    reasoning, _ = reason_batch1(ids)  # the reference regenerates the current prompt's reasoning
    sec["generation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows = run.rows(ids, reasoning)
    proposal = []
    with torch.no_grad():
        for r in rows:  # a separate batch-1 forward of question + prompt[:pos], all logits
            out = model(input_ids=torch.tensor([r.ids[: r.slot(pos)]])).logits
            proposal.append(out[0, -1])
            cnt["forwards"] += 1
            cnt["forward_tokens"] += r.slot(pos)
    emb = model.get_input_embeddings().weight
    model.requires_grad_(True)  # the reference never freezes the weights
    one_hot_grad = torch.zeros(emb.shape[0], dtype=emb.dtype)
    try:
        for r in rows:
            one_hot = torch.zeros(emb.shape[0], dtype=emb.dtype)
            one_hot[ids[pos]] = 1.0
            one_hot.requires_grad_(True)
            x = emb[torch.tensor(r.ids)].detach().clone()
            x = torch.cat([x[: r.slot(pos)], (one_hot @ emb)[None], x[r.slot(pos) + 1 :]])[None]
            logits = model(inputs_embeds=x).logits[0]  # every position, the whole vocabulary
            ans = [a - 1 for a in r.answer_at]
            prm = [r.prompt_start - 1 + j for j in range(r.prompt_len)]
            a_loss, flu, _ = row_losses(r, logits[ans], logits[prm], **kw)
            (a_loss + cfg.fluency_weight * flu).backward()
            one_hot_grad += one_hot.grad
            cnt["forwards"] += 1
            cnt["backwards"] += 1
            cnt["forward_tokens"] += len(r.ids)
    finally:
        model.zero_grad(set_to_none=True)
        model.requires_grad_(False)
    sec["gradient"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    previous = ids[pos - 1] if pos > 0 else (lay.prefix_ids[-1] if lay.prefix_ids else None)
    prop = propose(torch.stack(proposal), run.allowed, previous, k=cfg.top_k, intersections=cfg.intersections,
                   per_intersection=cfg.per_intersection, min_candidates=cfg.min_candidates, k_growth=cfg.k_growth,
                   rng=run.ctx.rng, keep=lambda t: not cfg.round_trip or lay.round_trips(ids[:pos] + [t] + ids[pos + 1 :]))
    cands = list(prop.candidates)
    if not state["grown"] and ids[pos] not in cands:
        cands.append(ids[pos])
    s = one_hot_grad[cands]
    s = (s / s.norm()).tolist()
    top = [cands[j] for j in sorted(range(len(cands)), key=lambda j: (s[j], cands[j]))[: cfg.rescore_top]]
    from harness.greater.optimizer import early_pick

    dot = early_pick([lay.tok.decode([c]) for c in top], pos, len(ids)) if cfg.early_accept else None
    if dot is not None:
        top = [top[dot]]
    sec["candidates"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gens = {c: reason_batch1(ids[:pos] + [c] + ids[pos + 1 :]) for c in top}
    sec["generation"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    results = {}
    with torch.no_grad():
        for c in top:
            variant = ids[:pos] + [c] + ids[pos + 1 :]
            scores = []
            for r in run.rows(variant, gens[c][0]):  # a full-length batch-1 forward per sequence
                logits = model(input_ids=torch.tensor([r.ids])).logits[0]
                ans = [a - 1 for a in r.answer_at]
                prm = [r.prompt_start - 1 + j for j in range(r.prompt_len)]
                scores.append(row_losses(r, logits[ans], logits[prm], **kw)[2])
                cnt["forwards"] += 1
                cnt["forward_tokens"] += len(r.ids)
            results[c] = run.summarise(variant, scores, *gens[c])
    chosen = top[0] if dot is not None else min(top, key=lambda c: (results[c].key, top.index(c)))
    sec["rescoring"] = time.perf_counter() - t0
    return {"candidates": cands, "top": top, "chosen": chosen, "prompt": results[chosen].text}, sec, cnt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="bbh:navigate")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--position", default="assistant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--backend", default="hf", choices=("hf", "vllm"),
                    help="decoding engine of the efficient path (gradients are always HF float32)")
    ap.add_argument("--decode-dtype", default="float32", help="dtype of the efficient path's decoding engine")
    args = ap.parse_args()

    import torch

    from harness.backends.hf import HFGenerator
    from harness.core.context import OptimizeContext
    from harness.evaluation.evaluate import evaluate
    from harness.greater.optimizer import make
    from tasks import get_task

    t0 = time.perf_counter()
    gm = HFGenerator(args.model, threads=args.threads, batch_size=args.batch_size)
    gen1 = HFGenerator(args.model, batch_size=1, model_obj=gm.model, tokenizer=gm.tokenizer, revision=gm.revision)
    gen1.use_chat_template = gm.use_chat_template
    task = get_task(args.task)
    splits = task.load()
    load_s = time.perf_counter() - t0
    decoder, t0 = gm, time.perf_counter()
    if args.backend == "vllm" or args.decode_dtype != "float32":
        from harness.backends import open_generator

        decoder = open_generator(args.model, backend=args.backend, dtype=args.decode_dtype, threads=args.threads,
                                 batch_size=args.batch_size, cache=False)
    engine_s = time.perf_counter() - t0
    ctx = OptimizeContext.create(scorer=evaluate, task_model=decoder, gradient_model=gm, seed=0, position=args.position,
                                 max_new_tokens=args.max_new_tokens)
    opt = make("cpu", n_train=args.n, train_reasoning_tokens=args.max_new_tokens, steps=args.steps)
    run = opt.prepare(task, splits.train, ctx)
    t0 = time.perf_counter()
    state = run.initial_state()
    init_s = time.perf_counter() - t0

    print(f"\n## GReaTer step time: {args.model}, {args.task}, N={args.n}, {args.max_new_tokens} new tokens, "
          f"position {args.position}\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads; model load {load_s:.0f} s, decoding engine start {engine_s:.0f} s, "
          f"initial reasoning {init_s:.1f} s; efficient path "
          f"decodes with {args.backend} {args.decode_dtype} (batch {args.batch_size}), naive with HF float32 batch 1.\n",
          flush=True)
    for i in range(args.steps):
        rng_state = ctx.rng.getstate()
        t0 = time.perf_counter()
        record, next_state = run.step(state)
        eff_total = time.perf_counter() - t0
        naive = None
        if args.naive:
            after = ctx.rng.getstate()
            ctx.rng.setstate(rng_state)  # the same draws: the same candidate sets
            t0 = time.perf_counter()
            choice, sec, cnt = naive_step(run, copy.deepcopy(state), gen1)
            naive = (choice, sec, cnt, time.perf_counter() - t0)
            ctx.rng.setstate(after)
        report(i, state["pos"], record, eff_total, naive, gm.tokenizer, args.n, run.cfg.grad_micro_batch)
        state = next_state


def report(i: int, pos: int, record: dict[str, Any], eff_total: float, naive: Any, tok: Any, n: int, micro: int) -> None:
    """One step's markdown table: per-phase wall time of both pass structures and what each ran."""
    chosen = record["chosen"]["id"]
    line = f"Step {i + 1} (position {pos}): efficient chose {tok.decode([chosen])!r}"
    if naive:
        choice = naive[0]
        line += (f", naive chose {tok.decode([choice['chosen']])!r}; same candidates: "
                 f"{choice['candidates'] == [c['id'] for c in record['candidates']]}, same top-3: "
                 f"{choice['top'] == [c['id'] for c in record['rescored']]}, same choice: {choice['chosen'] == chosen}")
    print(line + "\n")
    print("| phase | efficient (s) | naive (s) | naive / efficient |")
    print("|---|---|---|---|")
    for p in ("gradient", "candidates", "generation", "rescoring"):
        e = record["seconds"].get(p, 0.0)
        nv = naive[1].get(p) if naive else None
        ratio = f"{nv / e:.1f}x" if nv is not None and e > 0 else "-"
        print(f"| {p} | {e:.2f} | {'-' if nv is None else f'{nv:.2f}'} | {ratio} |")
    total = f"{naive[3]:.2f}" if naive else "-"
    ratio = f"{naive[3] / eff_total:.1f}x" if naive else "-"
    print(f"| **step total** | **{eff_total:.2f}** | **{total}** | **{ratio}** |\n")
    t = record["tokens"]
    print(f"Efficient: {t.get('gradient', 0)} tokens forward+backward (one batched pass in micro-batches of "
          f"{micro}), {t.get('rescoring', 0)} tokens re-scored, {t.get('generated', 0)} tokens generated "
          f"({len(record['rescored'])} candidates x {n} examples at most).")
    if naive:
        c = naive[2]
        print(f"Naive: {c['generations']} generations at batch 1, {c['forwards']} batch-1 forwards "
              f"({c['forward_tokens']} tokens), {c['backwards']} backward passes with weight gradients.")
    print(flush=True)


if __name__ == "__main__":
    main()
