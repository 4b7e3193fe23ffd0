"""How close `bench run --dry-run`'s time estimates come to what finished cells took.

Leave-one-out over a results folder: every finished optimize cell whose summary has the `evaluation` record
(its final evaluations' rows and seconds) is priced by the dry run's rules from all the *other* finished cells,
and the estimate is set beside its measured time (optimization wall + evaluation seconds).

    python benchmarks/dry_run_accuracy.py --results results --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from harness.core.spec import RunSpec
from harness.runner.data import RunData
from harness.runner.plan import make_plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    data = RunData(args.data_dir)
    cells = []
    for folder in sorted(p for p in args.results.iterdir() if (p / "summary.json").exists()):
        summary = json.loads((folder / "summary.json").read_text())
        spec = RunSpec.from_dict(json.loads((folder / "spec.json").read_text())["spec"])
        if spec.kind == "optimize" and summary.get("evaluation"):
            cells.append((folder, spec, summary))
    print("| cell | estimated | measured (optimization + evaluation) | estimate / measured |")
    print("|---|---:|---:|---:|")
    ratios = []
    for folder, spec, summary in cells:
        with tempfile.TemporaryDirectory() as tmp:  # every finished cell but this one
            others = Path(tmp) / "results"
            others.mkdir()
            for p in args.results.iterdir():
                if p.is_dir() and p != folder and (p / "summary.json").exists():
                    (others / p.name).mkdir()
                    for name in ("spec.json", "summary.json"):
                        shutil.copy(p / name, others / p.name / name)
            splits = data.optimize_splits(spec.task, spec.split_seed)
            rows = {spec.task: len(splits.dev) + 2 * len(splits.test[: spec.limit or None])}
            [plan] = make_plan([spec], others, eval_rows=rows, reference=None).cells
        measured = summary["cost"]["wall_seconds"] + summary["evaluation"]["seconds"]
        ratios.append(plan.seconds / measured)
        name = f"{spec.method} / {spec.task} / seed {spec.seed}"
        basis = "same-method cells" if plan.measured else "tokens at the rate"
        print(f"| {name} | {plan.seconds / 60:.1f} min ({basis}) | {measured / 60:.1f} min | {ratios[-1]:.2f} |")
    if ratios:
        print(f"\n{len(ratios)} cells; estimate / measured: median {statistics.median(ratios):.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()
