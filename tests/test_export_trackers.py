"""`bench export mlflow` against a temporary MLflow file store, read back with MLflow's own client, and `bench
export card` into a temporary folder (README in the Hub's layout, parquet tables of runs and predictions)."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from gridworld import write_run
from typer.testing import CliRunner

from harness.cli import app


def _cost(task: int) -> dict:
    return {"task_tokens_in": task, "task_tokens_out": 0, "task_calls": 3}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    write_run(root, method="ape", seed=0, correct=[1, 1, 0, 0], dev=0.75, prompt="Check each step.", cost=_cost(900),
              steps=[{"train_accuracy": 0.5, "selection_score": 0.5, "cost": _cost(100)},
                     {"train_accuracy": 0.75, "selection_score": 0.75, "cost": _cost(400)}],
              other_readings={"options": 0.25})
    write_run(root, method="zs-cot", seed=0, correct=[1, 0, 0, 0], prompt="Let's think step by step.")
    return root


def test_export_mlflow_reads_back_with_mlflows_client(results, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # set by the export too; restored after the test
    uri = (tmp_path / "mlruns").as_uri()
    res = CliRunner().invoke(app, ["export", "mlflow", "--results", str(results), "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert "logged 2 run(s), 0 already there" in res.output
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("greater-bench")
    runs = {r.data.tags["method"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"ape", "zs-cot"}
    ape = runs["ape"]
    assert ape.data.params["method"] == "ape" and ape.data.params["preset"] == "cpu" and ape.data.params["seed"] == "0"
    assert ape.data.metrics["test_accuracy"] == 0.5 and ape.data.metrics["dev_accuracy"] == 0.75
    assert ape.data.metrics["options_accuracy"] == 0.25 and ape.data.metrics["cost.task_tokens"] == 900
    assert ape.data.metrics["prompt_tokens"] == 4
    curve = client.get_metric_history(ape.info.run_id, "selection_score")
    assert sorted((m.step, m.value) for m in curve) == [(100, 0.5), (400, 0.75)]  # step = cumulative tokens
    arts = {a.path for a in client.list_artifacts(ape.info.run_id)}
    assert {"prompt.txt", "leaderboard.md", "spec.json", "summary.json"} <= arts
    prompt = client.download_artifacts(ape.info.run_id, "prompt.txt", str(tmp_path))
    assert open(prompt).read() == "Check each step."
    board = open(client.download_artifacts(ape.info.run_id, "leaderboard.md", str(tmp_path))).read()
    assert "| bbh:navigate | ape |" in board
    again = CliRunner().invoke(app, ["export", "mlflow", "--results", str(results), "--tracking-uri", uri])
    assert "logged 0 run(s), 2 already there" in again.output  # append-only: nothing twice
    assert len(client.search_runs([exp.experiment_id])) == 2
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"


def test_export_card_writes_the_hub_layout(results, tmp_path):
    out = tmp_path / "card"
    res = CliRunner().invoke(app, ["export", "card", "--results", str(results), "--out", str(out)])
    assert res.exit_code == 0, res.output
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and "- config_name: runs\n  data_files: data/runs.parquet" in readme
    assert "- config_name: predictions\n  data_files: data/predictions.parquet" in readme
    assert "| bbh:navigate | ape |" in readme and f"huggingface-cli upload ORG/NAME {out} . --repo-type dataset" in readme
    assert f"bench export card --results {results} --out {out}" in readme
    runs = pd.read_parquet(out / "data" / "runs.parquet").set_index("method")
    assert runs.loc["ape", "accuracy"] == 0.5 and runs.loc["ape", "prompt"] == "Check each step."
    assert runs.loc["ape", "options_accuracy"] == 0.25 and runs.loc["ape", "task_tokens"] == 900
    preds = pd.read_parquet(out / "data" / "predictions.parquet")
    assert len(preds) == 8 and preds.groupby("run_id")["greedy_correct"].sum().sort_values().tolist() == [1, 2]
