"""`bench export mlflow`: every finished run folder as an MLflow run, in the tracker researchers already use.

Per run folder: params from spec.json (the run spec, nested fields as `budget.task_tokens`), metrics from
summary.json (accuracies per reading, dev accuracy, zero-shot CoT, the cost meter, the prompt's length and the
reasoning it induced), the anytime curve as the step metric `selection_score` whose step is the cumulative token
count (MLflow's x axis then reads as tokens), and artifacts: the prompt, spec.json, summary.json and the
leaderboard of the whole results folder. Runs are tagged with their run id; exporting again skips runs already
in the experiment, so the export follows an append-only results folder.

The tracking URI defaults to a local file store (`./mlruns`, MLflow's own default): no server is needed. MLflow 3
keeps that store in maintenance mode and asks for `MLFLOW_ALLOW_FILE_STORE=true`, which the export sets for
file stores only. Needs the `mlflow` extra (`pip install "greater-bench[mlflow]"`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.core.records import load_run, read_spec, run_folders
from harness.core.text import prompt_tokens
from harness.core.types import BenchError
from harness.reports.curves import anytime
from harness.reports.leaderboard import cost_summary
from harness.reports.loading import CellRecord, cell_record

INSTALL_HINT = 'MLflow is not installed: pip install "greater-bench[mlflow]"'
RUN_TAG = "greater_bench.run_id"


def import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError as e:
        if getattr(e, "name", "") and str(e.name).startswith("mlflow"):
            raise BenchError(INSTALL_HINT) from None
        raise
    return mlflow


def tracking_uri(uri: str | None) -> str:
    """`uri`, or the local file store ./mlruns as an absolute file: URI."""
    return uri or Path("mlruns").resolve().as_uri()


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested JSON as flat MLflow params: {"budget": {"task_tokens": 5}} -> {"budget.task_tokens": "5"}."""
    out: dict[str, str] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return out


def run_metrics(rec: CellRecord) -> dict[str, float]:
    """The numbers of one run's summary worth plotting across runs."""
    m: dict[str, float] = {"test_accuracy": rec.accuracy, "n_test": float(rec.n)}
    m.update({f"{k}_accuracy": v for k, v in rec.readings.items()})
    for key, value in (("dev_accuracy", rec.dev_accuracy), ("zs_cot_test_accuracy", rec.zs_cot_accuracy),
                       ("reasoning_tokens", rec.reasoning_tokens), ("majority_accuracy", rec.majority)):
        if value is not None:
            m[key] = float(value)
    m["prompt_tokens"] = float(prompt_tokens(rec.prompt))
    if rec.leakage is not None:
        m["leak_words"] = float(rec.leakage.get("words") or 0)
    if rec.kind == "optimize":
        m.update({f"cost.{k}": v for k, v in cost_summary(rec.cost).items()})
    return m


def export_mlflow(results_dir: str | Path, *, leaderboard_md: str, uri: str | None = None,
                  experiment: str = "greater-bench") -> dict[str, list[str]]:
    """Log every finished run folder under `results_dir` not yet in `experiment`; {"logged": [...], "skipped": [...]}
    (run ids). `leaderboard_md`: the leaderboard logged with every run."""
    import_mlflow()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(uri)
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    root = Path(results_dir)
    folders = run_folders(root) if root.is_dir() else []
    if not folders:
        raise BenchError(f"no finished runs in {root}: run `bench run` first or pass --results")
    done: dict[str, list[str]] = {"logged": [], "skipped": []}
    with tempfile.TemporaryDirectory() as tmp:
        board = Path(tmp) / "leaderboard.md"
        board.write_text(leaderboard_md, encoding="utf-8")
        for folder in folders:
            spec = read_spec(folder)
            run_id = spec.run_id
            if client.search_runs([exp_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", max_results=1):
                done["skipped"].append(run_id)
                continue
            stored = load_run(folder, steps=True, predictions=True)
            rec = cell_record(stored)
            run = client.create_run(exp_id, run_name=run_id, tags={RUN_TAG: run_id})
            rid = run.info.run_id
            params = [Param(k, v[:6000]) for k, v in flatten(spec.spec).items()]
            metrics = [Metric(k, float(v), 0, 0) for k, v in (run_metrics(rec) if rec else {}).items()]
            if rec is not None:
                curve = anytime([rec])
                metrics += [Metric("selection_score", float(r.score), 0, int(r.tokens))
                            for r in curve.itertuples() if not r.final]
            tags = [RunTag(k, str(spec.spec[k])) for k in ("kind", "method", "task", "model")]
            for i in range(0, max(len(params), len(metrics), 1), 100):  # MLflow takes at most 100 params per batch
                client.log_batch(rid, metrics=metrics[i : i + 100], params=params[i : i + 100], tags=tags if i == 0 else [])
            prompt = Path(tmp) / "prompt.txt"
            prompt.write_text((rec.prompt if rec else stored.summary.get("instruction")) or "", encoding="utf-8")
            for path in (prompt, board, folder / "spec.json", folder / "summary.json"):
                client.log_artifact(rid, str(path))
            client.set_terminated(rid)
            done["logged"].append(run_id)
    return done
