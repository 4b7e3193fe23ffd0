"""`bench export card`: the results folder as a dataset card in the layout the Hugging Face Hub shows.

OUT/README.md holds the card metadata (YAML front matter naming two configurations, `runs` and `predictions`,
so the Hub's viewer shows both tables), the leaderboard, and the exact commands that made the runs (each run's
recorded command line) and the card; OUT/data/runs.parquet has one row per finished run (spec, accuracies per
reading, dev accuracy, prompt, prompt tokens, cost); OUT/data/predictions.parquet one row per test example and
run (predictions.jsonl when the folder has it, else the per-example correctness kept in summary.json).
Nothing is uploaded here; the README names the one `huggingface-cli upload` line that does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.io import atomic_write_text
from harness.core.records import RunRecord, load_run, run_folders
from harness.core.text import prompt_tokens
from harness.core.types import BenchError
from harness.reports.leaderboard import cost_summary

UPLOAD = "huggingface-cli upload ORG/NAME {out} . --repo-type dataset"


def runs_table(runs: list[RunRecord]) -> pd.DataFrame:
    rows = []
    for run in runs:
        spec, summary, test = run.spec.spec, run.summary, run.test
        row: dict[str, Any] = {"run_id": run.run_id, "kind": run.kind, "method": spec["method"],
                               "task": spec["task"], "model": spec["model"], "seed": spec["seed"],
                               "preset": spec.get("preset") or (spec.get("source") or {}).get("preset"),
                               "prompt": run.prompt, "prompt_tokens": prompt_tokens(run.prompt), "n_test": test.n,
                               "primary": test.primary, "accuracy": test.accuracy,
                               "dev_accuracy": summary.get("dev_accuracy"),
                               "zs_cot_test_accuracy": summary.get("zero_shot_cot_test_accuracy"),
                               "mean_reasoning_tokens": test.mean_reasoning_tokens,
                               "command": run.spec.command, "spec": json.dumps(spec, sort_keys=True)}
        for name, reading in (test.readings or {}).items():
            row[f"{name}_accuracy"] = reading.get("accuracy")
        row.update(cost_summary(summary.get("cost") or {}))
        rows.append(row)
    return pd.DataFrame(rows)


def predictions_table(runs: list[RunRecord]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for run in runs:
        run_id = run.path.name
        if run.predictions is not None:
            for r in run.predictions:
                d = r.to_dict()
                rows.append({"run_id": run_id, "id": str(r.id), "gold": r.gold,
                             **{k: d[k] for k in d if k.endswith("_correct") or k in ("greedy", "options", "fallback")}})
            continue
        compact = run.summary.get("per_example") or {}
        readings = [k for k in compact if k != "ids"]
        for i, ex in enumerate(compact.get("ids", [])):
            rows.append({"run_id": run_id, "id": ex, **{f"{k}_correct": compact[k][i] == "1" for k in readings}})
    return pd.DataFrame(rows)


def export_card(results_dir: str | Path, out: str | Path, *, leaderboard_md: str) -> Path:
    """Write the card of `results_dir` into `out`; returns the README's path."""
    root, out = Path(results_dir), Path(out)
    folders = run_folders(root) if root.is_dir() else []
    if not folders:
        raise BenchError(f"no finished runs in {root}: run `bench run` first or pass --results")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise BenchError('writing parquet needs pyarrow: pip install "greater-bench[card]"') from None
    (out / "data").mkdir(parents=True, exist_ok=True)
    stored = [load_run(f, predictions=True) for f in folders]
    runs = runs_table(stored)
    runs.to_parquet(out / "data" / "runs.parquet", index=False)
    predictions_table(stored).to_parquet(out / "data" / "predictions.parquet", index=False)
    commands = sorted({c for c in runs["command"].dropna() if c})
    text = "\n".join([
        "---",
        "pretty_name: greater-bench results",
        "tags: [prompt-optimization, benchmark, greater-bench]",
        "configs:",
        "- config_name: runs",
        "  data_files: data/runs.parquet",
        "  default: true",
        "- config_name: predictions",
        "  data_files: data/predictions.parquet",
        "---",
        "",
        "# greater-bench results",
        "",
        f"{len(runs)} finished runs ({(runs['kind'] == 'optimize').sum()} optimize cells) exported from `{root}` by "
        "`bench export card`. `runs`: one row per run (spec, accuracy per answer reading, dev accuracy, prompt, cost); "
        "`predictions`: one row per test example and run.",
        "",
        "## Leaderboard",
        "",
        leaderboard_md.replace("### ", "#### "),
        "## How the runs were made",
        "",
        "The command lines the run folders recorded:",
        "",
        "```bash",
        *commands,
        "```",
        "",
        "This card:",
        "",
        "```bash",
        f"bench export card --results {root} --out {out}",
        "```",
        "",
        "## Upload",
        "",
        "```bash",
        UPLOAD.format(out=out),
        "```",
        "",
    ])
    atomic_write_text(out / "README.md", text)
    return out / "README.md"
