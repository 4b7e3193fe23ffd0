"""Grid scaling: the same grid with `--executor local` and `--executor ray`, in one run, on this machine.

Both runs start from empty results folders and bypass the response cache (`--no-cache`), so each computes
every cell; the records of the two runs must be equal (checked here, wall times and placement aside). The
local executor runs as a user runs it by default (one cell at a time, torch's default threads); ray runs one
cell per core with one thread each (`--cell-cpus 1`). Prints a markdown table for docs/benchmarks.md.

    python benchmarks/grid_scaling.py --methods greater --tasks bbh:navigate,bbh:sports_understanding \\
        --seeds 1,2 --backend hf --out /tmp/scaling [--keep-into results]

On a multi-GPU node (one cell per GPU; vLLM decoding):

    python benchmarks/grid_scaling.py --methods greater,ape --tasks bbh:navigate,bbh:sports_understanding \\
        --seeds 0,1 --backend vllm --preset paper --models meta-llama/Meta-Llama-3-8B-Instruct \\
        --ray-args "--cell-gpus 1" --out /scratch/scaling

`--keep-into DIR` copies the ray run's folders into DIR afterwards (they are ordinary finished cells).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


def snapshot(folder: Path) -> dict:
    snap = {}
    for cell in sorted(p for p in folder.iterdir() if (p / "summary.json").exists()):
        summary = json.loads((cell / "summary.json").read_text())
        summary.pop("ran_on", None)
        summary["cost"].pop("wall_seconds", None)
        summary["cost"].pop("cached_calls", None)
        summary["test"].pop("seconds", None)
        summary.get("meta", {}).pop("seconds_per_step", None)
        snap[cell.name] = {"summary": summary, "predictions": (cell / "predictions.jsonl").read_text()}
    return snap


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="greater")
    ap.add_argument("--tasks", default="bbh:navigate,bbh:sports_understanding")
    ap.add_argument("--models", default="smollm2-135m")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--backend", default="hf")
    ap.add_argument("--extra", default="", help="more `bench run` options for both runs, e.g. '--budget 60000'")
    ap.add_argument("--ray-args", default="", help="more options for the ray run, e.g. '--cell-gpus 1'")
    ap.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR") or "../shared/data")
    ap.add_argument("--out", type=Path, default=Path("/tmp/grid-scaling"))
    ap.add_argument("--keep-into", type=Path, default=None)
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    grid = ["run", "--methods", args.methods, "--tasks", args.tasks, "--models", args.models, "--seeds", args.seeds,
            "--preset", args.preset, "--backend", args.backend, "--data-dir", args.data_dir, "--no-cache",
            *shlex.split(args.extra)]
    bench = [sys.executable, "-m", "harness.cli"]
    times = {}
    for name, more in (("local", []), ("ray", ["--executor", "ray", *shlex.split(args.ray_args)])):
        folder = args.out / name
        shutil.rmtree(folder, ignore_errors=True)
        times[name] = run([*bench, *grid, "--results", str(folder), *more], args.out / f"{name}.log")
        print(f"{name}: {times[name]:.0f} s", flush=True)
    local, ray = snapshot(args.out / "local"), snapshot(args.out / "ray")
    same = local == ray and len(local) > 0
    n = len(local)
    print(f"\n## Grid scaling: {n} cells ({args.methods} x {args.tasks} x seeds {args.seeds}, {args.models}, preset "
          f"{args.preset}, backend {args.backend}, no response cache)\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. Command: "
          f"`python benchmarks/grid_scaling.py --methods {args.methods} --tasks {args.tasks} --seeds {args.seeds} "
          f"--backend {args.backend}`\n")
    print("| executor | wall | per cell | speed-up |\n|---|---:|---:|---:|")
    for name in ("local", "ray"):
        print(f"| {name} | {times[name] / 60:.1f} min | {times[name] / 60 / max(n, 1):.1f} min | "
              f"{times['local'] / times[name]:.2f}x |")
    print(f"\nRecords equal (prompts, accuracies, predictions, costs; wall times and placement aside): {same}")
    if args.keep_into is not None:
        for cell in (args.out / "ray").iterdir():
            if (cell / "summary.json").exists() and not (args.keep_into / cell.name).exists():
                shutil.copytree(cell, args.keep_into / cell.name)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
