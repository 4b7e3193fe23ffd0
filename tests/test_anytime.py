"""Anytime curves: the best-so-far selection score against cumulative tokens, per run, from the step logs (known
answers on fabricated records), with the final test accuracy as the last point; plots and CSV from the CLI."""

from __future__ import annotations

import pandas as pd
import pytest
from gridworld import write_run
from typer.testing import CliRunner

from harness.cli import app
from harness.reports.curves import anytime
from harness.reports.loading import load_records


def _cost(task: int, opt: int = 0) -> dict:
    return {"task_tokens_in": task, "task_tokens_out": 0, "optimizer_tokens_in": opt, "optimizer_tokens_out": 0}


@pytest.fixture
def results(tmp_path):
    # an old log (curve key only): the running maximum of train accuracy; a step without a score is left out
    write_run(tmp_path, method="greater", correct=[1, 0, 0, 0], cost=_cost(900), steps=[
        {"train_accuracy": 0.5, "cost": _cost(100)}, {"train_accuracy": 0.25, "cost": _cost(300)},
        {"kind": "note", "cost": _cost(400)}, {"train_accuracy": 0.75, "cost": _cost(600)}])
    # a new log: the logged selection score as is (length penalty included); dev for TextGrad
    write_run(tmp_path, method="textgrad", correct=[1, 1, 0, 0], cost=_cost(500, 50), steps=[
        {"dev_accuracy": 0.6, "selection_score": 0.55, "cost": _cost(200, 20)},
        {"dev_accuracy": 0.5, "cost": _cost(400, 40)}])
    write_run(tmp_path, method="zs-cot", correct=[1, 1, 1, 0])  # no steps: its end point only
    return tmp_path


def test_anytime_known_answers(results):
    a = anytime(load_records(results))
    g = a[a["method"] == "greater"]
    assert list(g["tokens"]) == [100, 300, 600, 900] and list(g["score"]) == [0.5, 0.5, 0.75, 0.25]
    assert list(g["final"]) == [False, False, False, True] and list(g["split"]) == ["train"] * 3 + ["test"]
    t = a[a["method"] == "textgrad"]
    assert list(t["tokens"]) == [220, 440, 550] and list(t["score"]) == [0.55, 0.55, 0.5]
    assert list(t["optimizer_tokens"]) == [20, 40, 50] and list(t["split"]) == ["dev", "dev", "test"]
    z = a[a["method"] == "zs-cot"]
    assert len(z) == 1 and z.iloc[0]["final"] and z.iloc[0]["score"] == 0.75 and z.iloc[0]["tokens"] == 0


def test_leaderboard_writes_anytime_pngs_csv_and_html(results, tmp_path):
    plots = tmp_path / "plots"
    res = CliRunner().invoke(app, ["leaderboard", "--results", str(results), "--format", "html", "--plots", str(plots)])
    assert res.exit_code == 0, res.output
    assert (plots / "anytime-cpu-m-bbh_navigate.png").read_bytes()[:4] == b"\x89PNG"
    csv = pd.read_csv(plots / "anytime.csv")
    assert len(csv) == 4 + 3 + 1 and set(csv["method"]) == {"greater", "textgrad", "zs-cot"}
    page = (results / "leaderboard.html").read_text()
    assert "<h2>anytime: bbh:navigate, m (preset cpu)</h2>" in page
