"""One short real run of PE2 and EvoPrompt (GA, DE) with smollm2-135m as its own optimizer LLM.

    OMP_NUM_THREADS=1 python benchmarks/pe2_evoprompt_real.py [--methods pe2,evoprompt-ga,evoprompt-de]
        [--task bbh:navigate] [--model smollm2-135m] [--preset tiny] [--test 8] [--max-new-tokens 64]
        [--position before] [--seed 0] [--threads 1] [--cache/--no-cache] [--reference/--no-reference]

Each method optimizes with the `tiny` settings below (about a minute each on one CPU core; `--preset cpu` runs
the real cpu preset, ~10-15 min per method), then the best prompt (and zero-shot CoT with `--reference`) is
scored on the first `--test` test examples. Prints, per method, the best prompt, its test accuracy, the cost
(task- and optimizer-model calls and tokens, unparseable proposer outputs) and how the optimizer's outputs
were read (`meta["parses"]`: tagged, untagged, failed, rejected copies, cache hits): what a 135M optimizer
makes of these meta-prompts. Data: `BENCH_DATA_DIR` (e.g. ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

# Smaller than `cpu`, large enough to run every phase of each method once on a real model.
TINY: dict[str, dict[str, Any]] = {
    "pe2": dict(beam=1, expand=2, rounds=1, mine_chunk=4, dev_size=6, analysis_tokens=128, rewrite_tokens=64,
                reasoning_chars=300),
    "evoprompt-ga": dict(popsize=4, generations=1, init="seed", fitness_size=6, max_tokens=128),
    "evoprompt-de": dict(popsize=4, generations=1, init="seed", fitness_size=6, max_tokens=128),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="pe2,evoprompt-ga,evoprompt-de")
    ap.add_argument("--task", default="bbh:navigate")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--preset", default="tiny", help="tiny (this script's), smoke, cpu or paper")
    ap.add_argument("--test", type=int, default=8, help="test examples scored (the first N)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--position", default="before", help="where the prompt goes (the cpu preset's: before)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=False, help="also score zero-shot CoT")
    args = ap.parse_args()

    from harness.backends import open_generator
    from harness.core.context import OptimizeContext
    from harness.core.methods import make_optimizer
    from harness.core.types import ZERO_SHOT_COT
    from harness.evaluation.evaluate import evaluate
    from tasks import get_task

    task = get_task(args.task)
    splits = task.load(data_dir=os.environ.get("BENCH_DATA_DIR"))
    test = list(splits.test[: args.test])
    gen = open_generator(args.model, threads=args.threads, cache=args.cache)

    def score(instruction: str | None) -> float:
        res = evaluate(task, test, instruction, gen, position=args.position, max_new_tokens=args.max_new_tokens, seed=args.seed)
        return res.accuracy

    if args.reference:
        print(f"zs-cot: test {score(ZERO_SHOT_COT):.3f}", flush=True)
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        overrides = TINY[method] if args.preset == "tiny" else {}
        optimizer = make_optimizer(method, preset="smoke" if args.preset == "tiny" else args.preset, **overrides)
        ctx = OptimizeContext.create(
            scorer=evaluate, task_model=gen, seed=args.seed, position=args.position, max_new_tokens=args.max_new_tokens,
            progress=lambda m: print(f"  {m}", flush=True),
        )
        t0 = time.perf_counter()
        result = optimizer.optimize(task, splits.train, splits.dev, ctx)
        seconds = time.perf_counter() - t0
        cost = ctx.cost
        print(f"\n{method} ({args.preset}, {seconds:.0f} s): best {result.best.text!r} (own score {result.best.score})")
        print(f"  test {score(result.best.text or None):.3f} on {len(test)}; task {cost.task_calls} calls "
              f"{cost.task_tokens_in}/{cost.task_tokens_out} tokens; optimizer {cost.optimizer_calls} calls "
              f"{cost.optimizer_tokens_in}/{cost.optimizer_tokens_out} tokens; unparseable {cost.unparseable}")
        print(f"  parses: {dict(result.meta.get('parses', {}))}", flush=True)


if __name__ == "__main__":
    main()
