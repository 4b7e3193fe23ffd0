"""Decode throughput of the HF backend on the packaged SmolLM2-135M-Instruct.

Usage: python benchmarks/decode.py [--batches 1,8,16] [--dtypes float32,bfloat16] [--tokens 128]
       [--write docs/benchmarks.md]

Two figures per (dtype, batch):
- fixed: every sequence forced to exactly --tokens new tokens (min_new_tokens), comparable with
  the reference measurements;
- backend: `HFGenerator.generate` on real BBH chain-of-thought prompts (sequences stop at their end of
  text), counting only the tokens produced: what an evaluation actually gets.
The response cache is off. Prompts: bbh:navigate test rows with "Let's think step by step.".
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

import torch

from harness.backends.hf import HFGenerator
from harness.evaluate import build_prompt
from harness.types import GenParams
from tasks import get_task

MARK_BEGIN = "<!-- decode:begin -->"
MARK_END = "<!-- decode:end -->"


def measure(gen: HFGenerator, prompts, batch: int, tokens: int) -> tuple[float, float]:
    gen.batch_size = batch
    batch_prompts = prompts[:batch]
    # fixed length, through the same padded batch the backend builds
    ids = [gen.encode(gen.render(p)) for p in batch_prompts]
    width = max(map(len, ids))
    pad = gen.tokenizer.pad_token_id
    x = torch.tensor([[pad] * (width - len(r)) + r for r in ids])
    m = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids])
    with torch.no_grad():
        gen.model.generate(input_ids=x, attention_mask=m, max_new_tokens=4, do_sample=False, pad_token_id=pad)  # warm-up
        t = time.perf_counter()
        gen.model.generate(
            input_ids=x, attention_mask=m, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=pad
        )
        fixed = batch * tokens / (time.perf_counter() - t)
    t = time.perf_counter()
    out = gen.generate(batch_prompts, GenParams(max_tokens=tokens))
    produced = sum(len(g.samples[0].token_ids) for g in out)
    backend = produced / (time.perf_counter() - t)
    return fixed, backend


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,16")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--write", default=None, help="markdown file whose decode section is replaced")
    args = ap.parse_args()
    task = get_task("bbh:navigate")
    test = task.load().test
    batches = [int(b) for b in args.batches.split(",")]
    prompts = [build_prompt(ex, "Let's think step by step.", "after") for ex in test[: max(batches)]]
    rows = []
    for dtype in args.dtypes.split(","):
        gen = HFGenerator("smollm2-135m", dtype=dtype, threads=args.threads)
        for b in batches:
            fixed, backend = measure(gen, prompts, b, args.tokens)
            rows.append((dtype, b, fixed, backend))
            print(f"{dtype:9s} batch {b:3d}: fixed {fixed:7.1f} tok/s   backend {backend:7.1f} tok/s", flush=True)
    cmd = "python benchmarks/decode.py " + " ".join(
        f"--{k} {v}" for k, v in [("batches", args.batches), ("dtypes", args.dtypes), ("tokens", args.tokens), ("threads", args.threads)]
    )
    table = [
        MARK_BEGIN,
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads, "
        f"{time.strftime('%Y-%m-%d')}. Model: smollm2-135m (SmolLM2-135M-Instruct), greedy.",
        "",
        f"| dtype | batch | fixed {args.tokens} new tokens (tok/s) | backend, real CoT prompts (tok/s) |",
        "|---|---|---|---|",
        *[f"| {d} | {b} | {f:.1f} | {k:.1f} |" for d, b, f, k in rows],
        MARK_END,
    ]
    text = "\n".join(table)
    print(text)
    if args.write:
        path = Path(args.write)
        old = path.read_text() if path.exists() else "# Benchmarks\n"
        pattern = re.compile(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), re.S)
        new = pattern.sub(text, old) if pattern.search(old) else old.rstrip() + "\n\n## HF decode throughput\n" + text + "\n"
        path.write_text(new)


if __name__ == "__main__":
    main()
