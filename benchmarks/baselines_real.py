"""One short real run of each text-space baseline with smollm2-135m as its own optimizer LLM.

    python benchmarks/baselines_real.py [--methods ape,opro,protegi,textgrad] [--task bbh:navigate]
        [--model smollm2-135m] [--preset tiny] [--test 16] [--max-new-tokens 64] [--position after]
        [--seed 0] [--threads 2] [--cache/--no-cache]

Each method optimizes with its `tiny` settings below (a few minutes at most on 2 CPU cores; `--preset cpu`
runs the real cpu preset, ~15 min per method), then the best prompt and zero-shot CoT are scored on the
first `--test` test examples. Prints a markdown table: test accuracy, cost (task- and optimizer-model calls
and tokens, unparseable proposer outputs) and wall time. Without `--cache` nothing comes from the response
cache, so the times are honest; `--cache` reuses (and fills) the shared cache.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

# Smaller than `smoke` in scoring, large enough to exercise every phase of each method on a real model.
TINY: dict[str, dict[str, Any]] = {
    "ape": dict(demo_sets=2, demos_per_set=3, samples_per_set=3, eval_size=6, max_tokens=48),
    "opro": dict(steps=1, samples_per_step=4, train_size=6, max_tokens=48),
    "protegi": dict(
        rounds=1, beam_size=2, minibatch_size=6, n_gradients=1, errors_per_gradient=2, paraphrases=1,
        max_successors=2, eval_rounds=2, eval_prompts_per_round=2, samples_per_eval=4, max_tokens=64,
    ),
    "textgrad": dict(epochs=1, steps_per_epoch=2, batch_size=3, dev_size=6, feedback_tokens=64, max_tokens=48),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="ape,opro,protegi,textgrad")
    ap.add_argument("--task", default="bbh:navigate")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--preset", default="tiny", help="tiny (this script's), smoke, cpu or paper")
    ap.add_argument("--test", type=int, default=16, help="test examples scored (the first N)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--position", default="after")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True, help="also score zero-shot CoT")
    args = ap.parse_args()

    from baselines.fixed import ZERO_SHOT_COT
    from harness.backends import open_generator
    from harness.core.context import OptimizeContext
    from harness.core.methods import make_optimizer
    from harness.evaluation.evaluate import evaluate
    from tasks import get_task

    task = get_task(args.task)
    splits = task.load(data_dir=os.environ.get("BENCH_DATA_DIR"))
    test = list(splits.test[: args.test])
    gen = open_generator(args.model, threads=args.threads, cache=args.cache)

    def score(instruction: str | None) -> tuple[float, float]:
        t0 = time.perf_counter()
        res = evaluate(
            task, test, instruction, gen, position=args.position, max_new_tokens=args.max_new_tokens, seed=args.seed
        )
        return res.accuracy, time.perf_counter() - t0

    rows: list[tuple[str, str, float, Any, float]] = []
    if args.reference:
        zs_acc, zs_sec = score(ZERO_SHOT_COT)
        rows.append(("zs-cot", ZERO_SHOT_COT, zs_acc, None, zs_sec))
        print(f"zs-cot: test {zs_acc:.3f} ({zs_sec:.0f} s)", flush=True)
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        if args.preset == "tiny":
            optimizer = make_optimizer(method, preset="smoke", **TINY[method])
        else:
            optimizer = make_optimizer(method, preset=args.preset)
        ctx = OptimizeContext.create(scorer=evaluate,
            task_model=gen, seed=args.seed, position=args.position, max_new_tokens=args.max_new_tokens,
            progress=lambda m: print(f"  {m}", flush=True),
        )
        print(f"{method}: optimizing ({args.preset})", flush=True)
        result = optimizer.optimize(task, splits.train, splits.dev, ctx)
        ctx.tick()
        acc, sec = score(result.best.text or None)
        rows.append((method, result.best.text, acc, ctx.cost, ctx.cost.wall_seconds + sec))
        print(f"{method}: test {acc:.3f} with {result.best.text!r}; {ctx.cost.to_dict()}", flush=True)

    print(f"\n{args.task}, {args.model} (task and optimizer model), first {len(test)} test examples, "
          f"{args.max_new_tokens}-token reasoning, position {args.position}, preset {args.preset}, seed {args.seed}\n")
    print("| method | prompt | test acc | task calls | task tokens in/out | optimizer calls | optimizer tokens in/out "
          "| unparseable | wall s (optimize + test) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method, prompt, acc, cost, sec in rows:
        if cost is None:
            cells = ["-"] * 5
        else:
            cells = [str(cost.task_calls), f"{cost.task_tokens_in}/{cost.task_tokens_out}", str(cost.optimizer_calls),
                     f"{cost.optimizer_tokens_in}/{cost.optimizer_tokens_out}", str(cost.unparseable)]
        shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        print(f"| {method} | {shown!r} | {acc:.3f} | " + " | ".join(cells) + f" | {sec:.0f} |")


if __name__ == "__main__":
    main()
