"""Time GReaTer steps: this project's pass structure against the reference code's, on the same inputs.

    python benchmarks/greater_step.py [--model smollm2-135m] [--task bbh:navigate] [--n 8]
        [--max-new-tokens 64] [--steps 1] [--position assistant] [--threads 2] [--naive/--no-naive]
        [--backend hf|vllm] [--dtype float32|bfloat16] [--emulate-bf16] [--out steps.json] [--replay steps.json]

`--dtype` is the efficient path's (gradient model, re-scoring and decoding); the naive path is always HF float32.
`--out` saves every step's starting state, RNG state and record; `--replay` runs each step of such a file
from its saved state and RNG (instead of following its own choices) and reports whether this run made the
same candidate sets, top-3 and choices: a float32 run with `--out`, then a bfloat16 run with `--replay`,
measures how often bf16 changes GReaTer's decisions on the same steps. On a CPU without bf16 instructions
(AVX2 only: torch's bf16 product is a scalar loop there), `--emulate-bf16` computes every bf16 linear layer as
float32 sums of the bf16 operands rounded back to bf16 (`harness.backends.bf16`): the numbers of an AMX bf16
run at float32 speed, for the agreement only (its times are not bf16 times). It needs `--backend hf`.

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
import json
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
    kw = {"temperature": cfg.answer_temperature, "loss": run.variants.loss}

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
    ap.add_argument("--backend", default="hf", choices=("hf", "vllm"), help="decoding engine of the efficient path")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                    help="the efficient path's gradient model, re-scoring and decoding")
    ap.add_argument("--emulate-bf16", action="store_true",
                    help="bf16 numerics with float32 kernels (CPUs without bf16 instructions; agreement only)")
    ap.add_argument("--rescore-with", default="gradient_model", choices=("gradient_model", "task_model"),
                    help="GReaTer's rescore_with (task_model: answers from the decoder's next-token log-probabilities)")
    ap.add_argument("--out", help="save each step's state, RNG and record (JSON)")
    ap.add_argument("--replay", help="run the steps of a saved file from their states; report agreement")
    args = ap.parse_args()
    if args.emulate_bf16 and (args.dtype != "bfloat16" or args.backend != "hf"):
        ap.error("--emulate-bf16 needs --dtype bfloat16 --backend hf (a vLLM engine's kernels cannot be swapped)")

    import contextlib

    import torch

    from harness.backends.bf16 import fp32_accumulated_linear

    patch = contextlib.ExitStack()
    if args.emulate_bf16:  # the whole run: initial reasoning, gradients, re-scoring and decoding
        patch.enter_context(fp32_accumulated_linear())

    from harness.backends.hf import HFGenerator
    from harness.core.context import OptimizeContext, _rng_from_json, _rng_to_json
    from harness.evaluation.evaluate import evaluate
    from harness.greater.optimizer import make
    from harness.greater.state import SearchState
    from tasks import get_task

    t0 = time.perf_counter()
    gm = HFGenerator(args.model, threads=args.threads, batch_size=args.batch_size, dtype=args.dtype)
    gen1 = None
    if args.naive:  # the reference structure: float32 weights, batch 1
        ref = gm if args.dtype == "float32" else HFGenerator(args.model, batch_size=1)
        gen1 = HFGenerator(args.model, batch_size=1, model_obj=ref.model, tokenizer=ref.tokenizer, revision=ref.revision)
        gen1.use_chat_template = gm.use_chat_template
    task = get_task(args.task)
    splits = task.load()
    load_s = time.perf_counter() - t0
    decoder, t0 = gm, time.perf_counter()
    if args.backend == "vllm":
        from harness.backends import open_generator

        decoder = open_generator(args.model, backend=args.backend, dtype=args.dtype, threads=args.threads,
                                 batch_size=args.batch_size, cache=False)
    engine_s = time.perf_counter() - t0
    ctx = OptimizeContext.create(scorer=evaluate, task_model=decoder, gradient_model=gm, seed=0, position=args.position,
                                 max_new_tokens=args.max_new_tokens)
    opt = make("cpu", n_train=args.n, train_reasoning_tokens=args.max_new_tokens, steps=args.steps, rescore_with=args.rescore_with)
    run = opt.prepare(task, splits.train, ctx)
    saved = json.loads(open(args.replay).read()) if args.replay else None
    t0 = time.perf_counter()
    state = SearchState.from_json(saved["steps"][0]["state"]) if saved else run.initial_state()
    init_s = time.perf_counter() - t0

    print(f"\n## GReaTer step time: {args.model}, {args.task}, N={args.n}, {args.max_new_tokens} new tokens, "
          f"position {args.position}\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads; model load {load_s:.0f} s, decoding engine start {engine_s:.0f} s, "
          f"initial reasoning {init_s:.1f} s; efficient path: gradients and re-scoring HF {_dtype(vars(args))}, "
          f"decoding {args.backend} {_dtype(vars(args))} (batch {args.batch_size}), re-scoring by the {args.rescore_with}; "
          f"naive: HF float32 batch 1.\n",
          flush=True)
    log, agree = [], []
    steps = saved["steps"] if saved else [None] * args.steps
    for i, old in enumerate(steps):
        if old is not None:
            state = SearchState.from_json(old["state"])
            ctx.rng.setstate(_rng_from_json(old["rng"]))
        rng_state = ctx.rng.getstate()
        t0 = time.perf_counter()
        record, next_state = run.step(state)
        eff_total = time.perf_counter() - t0
        log.append({"state": state.to_json(), "rng": _rng_to_json(rng_state), "record": record, "total": eff_total})
        naive = None
        if args.naive:
            after = ctx.rng.getstate()
            ctx.rng.setstate(rng_state)  # the same draws: the same candidate sets
            t0 = time.perf_counter()
            choice, sec, cnt = naive_step(run, copy.deepcopy(state.to_json()), gen1)
            naive = (choice, sec, cnt, time.perf_counter() - t0)
            ctx.rng.setstate(after)
        report(i, state.cursor, record, eff_total, naive, gm.tokenizer, args.n, run.cfg.grad_micro_batch)
        if old is not None:
            agree.append(compare(old["record"], record, old["total"], eff_total, gm.tokenizer))
        state = next_state
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "steps": log}, f)
    if agree:
        report_agreement(saved["args"], vars(args), agree)
    patch.close()


def compare(a: dict[str, Any], b: dict[str, Any], ta: float, tb: float, tok: Any) -> dict[str, Any]:
    """Did two runs of the same step decide the same? Candidate sets, top-3 (ordered), choice; phase times."""
    ids = lambda rec, key: [c["id"] for c in rec[key]]  # noqa: E731
    return {"position": a["position"], "candidates": set(ids(a, "candidates")) == set(ids(b, "candidates")),
            "overlap": len(set(ids(a, "candidates")) & set(ids(b, "candidates"))) / max(1, len(set(ids(a, "candidates")))),
            "top": ids(a, "rescored") == ids(b, "rescored"), "top_set": set(ids(a, "rescored")) == set(ids(b, "rescored")),
            "choice": a["chosen"]["id"] == b["chosen"]["id"], "chosen": (tok.decode([a["chosen"]["id"]]), tok.decode([b["chosen"]["id"]])),
            "seconds": (a["seconds"], b["seconds"]), "total": (ta, tb)}


def _dtype(args: dict[str, Any]) -> str:
    return args["dtype"] + (" emulated (float32-accumulated linear layers)" if args.get("emulate_bf16") else "")


def report_agreement(a: dict[str, Any], b: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Markdown: per step, whether the replayed run decided as the saved one did, and both runs' phase times."""
    what = lambda x: (f"{_dtype(x)} ({x['backend']} decoding batch {x['batch_size']}, "  # noqa: E731
                      f"re-scoring by the {x.get('rescore_with', 'gradient_model')})")
    print(f"\n## Agreement: {what(a)} vs {what(b)}, same steps\n")
    print("| step | pos | same candidate set | candidate overlap | same top-3 (order) | same top-3 (set) | same choice "
          "| chosen | gradient s | generation s | rescoring s | step s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows):
        sa, sb = r["seconds"]
        cell = lambda k, sa=sa, sb=sb: f"{sa.get(k, 0):.1f} / {sb.get(k, 0):.1f}"  # noqa: E731
        print(f"| {i + 1} | {r['position']} | {r['candidates']} | {r['overlap']:.2f} | {r['top']} | {r['top_set']} | {r['choice']} "
              f"| {r['chosen'][0]!r} / {r['chosen'][1]!r} | {cell('gradient')} | {cell('generation')} | {cell('rescoring')} "
              f"| {r['total'][0]:.1f} / {r['total'][1]:.1f} |")
    n = len(rows)
    pct = lambda k: 100 * sum(bool(r[k]) for r in rows) / n  # noqa: E731
    print(f"\nOver {n} steps: same candidate set {pct('candidates'):.0f}%, mean overlap "
          f"{100 * sum(r['overlap'] for r in rows) / n:.0f}%, same top-3 {pct('top'):.0f}% (as a set {pct('top_set'):.0f}%), "
          f"same choice {pct('choice'):.0f}%; step time {sum(r['total'][0] for r in rows):.1f} s vs "
          f"{sum(r['total'][1] for r in rows):.1f} s.", flush=True)


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
