"""Reports on hand-made records: statistics against hand-computed values, the leaderboard's known answers,
corrupt and truncated record files, the self-contained HTML page, plots and the transfer matrix."""

from __future__ import annotations

import base64
import dataclasses
import math
import re

import pytest
from gridworld import TASK, TASK_NAME, TaskModel, write_run

from harness.core.records import StepRecord
from harness.core.types import BenchError
from harness.evaluation.evaluate import evaluate
from harness.evaluation.stats import (
    binomial_two_sided,
    mcnemar_exact,
    mean_interval,
    paired_bootstrap,
    sign_test,
    stratified_bootstrap_ci,
)
from harness.reports import leaderboard as report
from harness.reports import render
from harness.reports.curves import curves
from harness.reports.loading import load_records

T1, T2 = "bbh:navigate", "bbh:date_understanding"
ZS = [1, 1, 0, 0, 0, 0, 0, 0, 1, 0]  # 0.3
GREATER = {0: [1, 1, 1, 1, 1, 1, 1, 0, 0, 0], 1: [1, 1, 1, 1, 1, 1, 0, 0, 0, 0], 2: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]}  # .7 .6 .8
APE = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]  # 0.1, one seed
COST = {"task_tokens_in": 100, "task_tokens_out": 50, "task_calls": 10, "optimizer_calls": 2, "wall_seconds": 60.0}


# ------------------------------------------------------------------------------------------ statistics


def test_exact_mcnemar_by_hand():
    # 5 examples only system A got right, 1 only B: p = 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64
    assert mcnemar_exact(5, 1) == pytest.approx(14 / 64)
    assert mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    assert binomial_two_sided(1, 4) == pytest.approx(2 * 5 / 16)


def test_exact_tests_match_scipy():
    from scipy import stats

    for k, n in [(0, 1), (2, 9), (7, 20), (30, 41), (150, 300)]:
        assert binomial_two_sided(k, n) == pytest.approx(stats.binomtest(k, n, 0.5).pvalue, rel=1e-9)


def test_sign_test_is_mcnemar_on_binary_and_drops_ties():
    a, b = GREATER[0], ZS  # A-only right: 5, B-only: 1
    assert sign_test([x - y for x, y in zip(a, b)]) == pytest.approx(mcnemar_exact(5, 1))
    assert sign_test([1, 1, 1, 1, 2 / 3, 1 / 3, -1, 0, 0, 0]) == pytest.approx(2 * (1 + 7) / 128)


def test_intervals():
    m, lo, hi = mean_interval([0.6, 0.7, 0.8])
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (m, lo, hi) == pytest.approx((0.7, 0.7 - half, 0.7 + half), abs=1e-6)
    assert math.isnan(mean_interval([0.5])[1])
    assert stratified_bootstrap_ci([[1] * 5, [0] * 5]) == (0.5, 0.5)
    assert paired_bootstrap([1, 0, 1], [1, 0, 1])[::3] == (0.0, 1.0)
    delta, lo, hi, p = paired_bootstrap([1] * 20, [0] * 20)
    assert (delta, lo, hi, p) == (1.0, 1.0, 1.0, 0.0)
    delta, lo, hi, p = paired_bootstrap(GREATER[0], ZS)
    assert delta == pytest.approx(0.4) and lo < 0.4 < hi and 0 < p < 0.2


# ------------------------------------------------------------------------------------------ leaderboard


@pytest.fixture
def results(tmp_path):
    for task in (T1, T2):
        for s in (0, 1, 2):
            write_run(tmp_path, method="zs-cot", task=task, seed=s, correct=ZS, zs=0.3, cost={"wall_seconds": 1.0})
            g = GREATER[s] if task == T1 else [1 - x for x in GREATER[s]]  # T2: .3 .4 .2
            write_run(tmp_path, method="greater", task=task, seed=s, correct=g, zs=0.3, dev=0.5, cost=COST,
                      steps=[{"kind": "step", "train_accuracy": 0.5}, {"kind": "step", "train_accuracy": 0.75},
                             {"kind": "dev_selection", "dev_accuracy": 0.6}])
        write_run(tmp_path, method="ape", task=task, seed=0, correct=APE, ci95=(0.0, 0.3), zs=0.3,
                  steps=[{"phase": "score", "proposed": ["a", "b"]}, {"scored": [["a", 0.25]], "train_accuracy": 0.75}])
    # another preset with no zero-shot-CoT cells: the reference row comes from the cells themselves
    write_run(tmp_path, method="greater", task=T1, seed=0, correct=[1, 0], preset="smoke", zs=0.25)
    write_run(tmp_path, method="greater", task=T1, seed=1, correct=[1, 1], preset="smoke", zs=0.35)
    return tmp_path


def _row(board, task, method, preset="cpu"):
    rows = board[(board["task"] == task) & (board["method"] == method) & (board["preset"] == preset)]
    assert len(rows) == 1, (task, method, preset)
    return rows.iloc[0]


def test_leaderboard_known_answers(results):
    board = report.leaderboard(load_records(results))
    g = _row(board, T1, "greater")
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert g["seeds"] == 3 and g["accuracy"] == pytest.approx(0.7)
    # several seeds: the wider of the t interval over seeds and the bootstrap over examples of the seed means
    seed_means = [sum(GREATER[s][i] for s in range(3)) / 3 for i in range(len(GREATER[0]))]
    boot = stratified_bootstrap_ci([seed_means])
    assert (g["ci_low"], g["ci_high"]) == pytest.approx((min(0.7 - half, boot[0]), max(0.7 + half, boot[1])), abs=1e-6)
    # per example, greater averaged over seeds vs zs-cot: 6 better, 1 worse -> 2 * (1 + 7) / 128
    assert g["p_vs_zs_cot"] == pytest.approx(0.125) and g["delta_vs_zs_cot"] == pytest.approx(0.4)
    assert math.isnan(g["p_vs_greater"])
    assert (g["tokens"], g["calls"], g["wall_seconds"], g["dev_accuracy"]) == (150, 12, 60, 0.5)
    a = _row(board, T1, "ape")
    assert a["seeds"] == 1 and a["accuracy"] == pytest.approx(0.1) and (a["ci_low"], a["ci_high"]) == (0.0, 0.3)
    assert a["p_vs_zs_cot"] == pytest.approx(mcnemar_exact(1, 3)) == pytest.approx(0.625)
    assert a["p_vs_greater"] == pytest.approx(mcnemar_exact(1, 7))  # on the common seed 0
    z = _row(board, T1, "zs-cot")
    # identical seeds: a zero-width t interval, so the examples' bootstrap is reported
    assert z["accuracy"] == pytest.approx(0.3) and (z["ci_low"], z["ci_high"]) == pytest.approx(stratified_bootstrap_ci([ZS]))
    assert z["ci_low"] < 0.3 < z["ci_high"]
    # average over the two tasks: greater per seed (.7+.3)/2, (.6+.4)/2, (.8+.2)/2 -> 0.5 with zero spread
    avg = _row(board, "average", "greater")
    # ... whose zero-width t interval gives way to the bootstrap over examples of the seed-averaged correctness
    t2_means = [1 - x for x in seed_means]
    assert avg["tasks"] == 2 and avg["accuracy"] == pytest.approx(0.5)
    tasks_in_order = [seed_means, t2_means] if sorted([T1, T2])[0] == T1 else [t2_means, seed_means]
    assert (avg["ci_low"], avg["ci_high"]) == pytest.approx(stratified_bootstrap_ci(tasks_in_order))
    assert avg["ci_low"] < 0.5 < avg["ci_high"]
    assert _row(board, "average", "ape")["accuracy"] == pytest.approx(0.1)
    # reference first, then greater, then the rest; average rows before the tasks
    cpu = board[board["preset"] == "cpu"]
    assert list(cpu["method"][:3]) == ["zs-cot", "greater", "ape"] and list(cpu["task"][:3]) == ["average"] * 3
    # the smoke preset has no zs-cot cells: the in-cell reference row is the cells' mean
    ref = _row(board, T1, report.IN_CELL, "smoke")
    assert ref["accuracy"] == pytest.approx(0.3)
    assert _row(board, T1, "greater", "smoke")["accuracy"] == pytest.approx(0.75)


def test_two_runs_of_one_cell_are_an_error(results):
    records = load_records(results)
    twin = dataclasses.replace(records[0], run_id="other")
    with pytest.raises(BenchError, match="two runs of"):
        report.leaderboard([*records, twin])


def test_curves_from_step_logs(results):
    records = load_records(results)
    c = curves(records)
    g = c[(c["method"] == "greater") & (c["task"] == T1) & (c["seed"] == 0)]
    assert list(g["step"]) == [0, 1, 2] and list(g["train_accuracy"][:2]) == [0.5, 0.75]
    assert math.isnan(g["train_accuracy"].iloc[2]) and g["dev_accuracy"].iloc[2] == 0.6
    ape = c[c["method"] == "ape"]  # a step without a score (proposals only) has no point
    assert list(ape["step"]) == [1, 1] and list(ape["train_accuracy"]) == [0.75, 0.75]  # one row per task

    # step logs written before the shared keys: GReaTer's train_error and dev list, APE/OPRO's scored pairs
    old = [{"kind": "step", "train_error": 0.25}, {"kind": "dev_selection", "dev": [{"accuracy": 0.4}, {"accuracy": 0.6}]},
           {"scored": [["a", 0.5], ["b", 0.25]]}]
    legacy = curves([dataclasses.replace(records[0], steps=tuple(StepRecord.from_dict({"step": i, **s}) for i, s in enumerate(old)))])
    assert list(legacy["train_accuracy"].fillna(-1)) == [0.75, -1, 0.5] and legacy["dev_accuracy"].iloc[1] == 0.6


def test_markdown_and_csv(results):
    records = load_records(results)
    board = report.leaderboard(records)
    md = render.to_markdown(board)
    assert "### m, preset cpu: average over 2 tasks" in md
    assert re.search(r"\| greater \| 70\.0 \[\d+-\d+\] \| \+40\.0 \| 0\.125 \| - \|", md)
    assert "| bbh:navigate | ape | 10.0 [0-30] |" in md
    csv = render.to_csv(board)
    assert csv.splitlines()[0].startswith("preset,model,task,method,") and len(csv.splitlines()) == len(board) + 1


def test_other_readings_are_reported_beside_the_primary(tmp_path):
    """Every reading of the same test runs gets a column: mean over seeds, averaged over tasks, in md and html."""
    for s, (opt, fb) in enumerate(((0.6, 0.2), (0.8, 0.4))):
        write_run(tmp_path, method="greater", task=T1, seed=s, correct=[1, 0], other_readings={"options": opt, "fallback": fb})
    write_run(tmp_path, method="greater", task=T2, seed=0, correct=[0, 0], other_readings={"options": 0.5})
    write_run(tmp_path, method="greater", task=T2, seed=1, correct=[0, 0], other_readings={"options": 0.3})
    board = report.leaderboard(load_records(tmp_path))
    g1, g2, avg = _row(board, T1, "greater"), _row(board, T2, "greater"), _row(board, "average", "greater")
    assert g1["primary"] == "greedy" and g1["greedy_accuracy"] == pytest.approx(0.5) == g1["accuracy"]
    assert (g1["options_accuracy"], g1["fallback_accuracy"]) == pytest.approx((0.7, 0.3))
    assert g2["options_accuracy"] == pytest.approx(0.4) and math.isnan(g2["fallback_accuracy"])
    assert (avg["options_accuracy"], avg["primary"]) == (pytest.approx(0.55), "greedy")
    assert math.isnan(avg["fallback_accuracy"])  # T2 has no fallback reading: no average over "2 tasks" from one
    md = render.to_markdown(board)
    assert "average over 2 tasks (test acc: greedy reading)" in md and "greedy %" not in md  # the primary is not repeated
    assert "| method | test acc % [95% CI] | options % | fallback % | Δ vs zs-cot |" in md
    # two seeds with identical per-example results: the interval is the examples' bootstrap, not [50-50]
    assert "| bbh:navigate | greater | 50.0 [0-100] | 70.0 | 30.0 |" in md and "| 0.0 [0-0] | 40.0 | - |" in md
    page = render.to_html(board)
    assert '<th class="t">method</th><th class="">test acc % [95% CI]</th><th class="">options %</th><th class="">fallback %</th>' in page


def test_html_page_is_self_contained(results):
    records = load_records(results)
    page = render.page(records)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<link" not in page and "http" not in page
    # cpu: average + per task; smoke: per task (one task, no average); prompts
    assert page.count('<table class="sortable">') == 4 and "addEventListener('click'" in page
    assert '<td class="t" data-sort="greater">greater</td>' in page and "70.0 [" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)


# ------------------------------------------------------------------------------------------ corrupt records


def test_truncated_summary_is_named(results):
    path = next(results.glob("optimize-greater-*")) / "summary.json"
    path.write_text(path.read_text()[:50])
    with pytest.raises(BenchError, match=rf"corrupt or truncated record {re.escape(str(path))}"):
        load_records(results)


def test_torn_prediction_line_is_named(results):
    path = next(results.glob("optimize-greater-*")) / "predictions.jsonl"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(BenchError, match=rf"{re.escape(str(path))} line 10"):
        load_records(results)


def test_missing_prediction_lines_are_detected(results):
    path = next(results.glob("optimize-greater-*")) / "predictions.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:8]))
    with pytest.raises(BenchError, match=rf"truncated record {re.escape(str(path))}: 8 examples, summary.json says 10"):
        load_records(results)


def test_wrong_schema_and_absent_predictions(results):
    folder = next(results.glob("optimize-ape-*"))
    (folder / "predictions.jsonl").unlink()  # per-example files may stay out of git: no paired test then
    board = report.leaderboard(load_records(results))
    rows = board[(board["method"] == "ape") & (board["task"] != "average")]
    assert rows["p_vs_zs_cot"].isna().sum() == 1 and rows["accuracy"].notna().all()
    spec = folder / "spec.json"
    spec.write_text(spec.read_text().replace('"schema": 1', '"schema": 99'))
    with pytest.raises(BenchError, match=rf"{re.escape(str(spec))} has schema 99, expected 1"):
        load_records(results)


# ------------------------------------------------------------------------------------------ transfer


GOOD, WEAK = "Be good and check each step.", "Answer now."


def test_transfer_matrix(tmp_path, monkeypatch):
    import tasks
    from harness.reports.transfer import transfer_report
    from harness.runner.pool import PoolSettings
    from harness.runner.transfer import run_transfer

    def transfer(results, targets, **kw):  # what `bench transfer` does: the runner's evaluations, the report's matrices
        done = run_transfer(results, targets, **kw)
        return transfer_report(results, done.sources, done.models, report_dir=kw.get("report_dir"))

    monkeypatch.setattr(tasks, "get_task", lambda name: TASK)
    src = {}
    for s in (0, 1):
        src["a", s] = write_run(tmp_path, method="greater", task=TASK_NAME, model="fake-a", seed=s, correct=[1, 0], prompt=GOOD)
        src["b", s] = write_run(tmp_path, method="greater", task=TASK_NAME, model="fake-b", seed=s, correct=[1, 0, 0, 0], prompt=WEAK)
    opened = []

    def opener(model, backend, dtype):
        opened.append(model)
        return TaskModel(model)

    m = transfer(tmp_path, ["fake-a", "fake-b"], settings=PoolSettings(opener=opener), report_dir=tmp_path / "transfer")[("cpu", "greater")]
    assert opened == ["fake-a", "fake-b"]  # each target loaded once for its two prompts
    weak_on_a = evaluate(TASK, TASK.load().test, WEAK, TaskModel("fake-a")).accuracy
    assert weak_on_a < 1
    assert list(m.index) == ["fake-a", "fake-b"] and list(m.columns) == ["fake-a", "fake-b"]
    assert m.loc["fake-a", "fake-b"] == 1.0  # the good prompt (quality 1) is right on every model
    assert m.loc["fake-b", "fake-a"] == pytest.approx(weak_on_a)  # rows: optimized on; columns: evaluated on
    assert m.loc["fake-a", "fake-a"] == 0.5 and m.loc["fake-b", "fake-b"] == 0.25  # the cells' own test results
    csv = (tmp_path / "transfer" / "transfer-cpu-greater.csv").read_text().splitlines()
    assert csv[0] == "source_model,fake-a,fake-b" and csv[1] == "fake-a,0.5,1.0"
    assert (tmp_path / "transfer" / "transfer-cpu-greater.png").read_bytes()[:4] == b"\x89PNG"
    evals = list(tmp_path.glob("eval-greater-*"))
    assert len(evals) == 4 and all((e / "summary.json").exists() for e in evals)

    opened.clear()  # a second run: every pair is a finished run folder, no model is opened
    again = transfer(tmp_path, ["fake-a", "fake-b"], settings=PoolSettings(opener=opener))[("cpu", "greater")]
    assert opened == [] and again.equals(m)
    md = render.to_markdown(report.leaderboard(load_records(tmp_path)), report.transfer_matrices(load_records(tmp_path)))
    assert "### transfer: greater (preset cpu)" in md and f"| fake-b | {100 * weak_on_a:.1f} | 25.0 |" in md


def test_majority_class_reference_rows(tmp_path):
    """Records that carry their test split's majority class give a reference row per task and on average;
    records without it (older runs) or with disagreeing splits give none."""
    for method in ("zs-cot", "greater"):
        write_run(tmp_path, method=method, task=T1, correct=[1, 0], majority=0.58)
        write_run(tmp_path, method=method, task=T2, correct=[1, 1], majority=0.6)
        write_run(tmp_path, method=method, task=T1, model="old", correct=[1, 0])  # written before the field
    write_run(tmp_path, method="zs-cot", task=T1, model="mixed", correct=[1, 0], majority=0.5)
    write_run(tmp_path, method="greater", task=T1, model="mixed", correct=[1, 0], majority=0.7)
    board = report.leaderboard(load_records(tmp_path))
    assert _row(board, T1, report.MAJORITY)["accuracy"] == pytest.approx(0.58)
    assert _row(board, "average", report.MAJORITY)["accuracy"] == pytest.approx(0.59)
    for model in ("old", "mixed"):
        assert report.MAJORITY not in set(board[board["model"] == model]["method"])
    m = board[board["model"] == "m"]
    assert list(m["method"][:3]) == [report.MAJORITY, "zs-cot", "greater"]  # the majority class leads
    md = render.to_markdown(board)
    assert "| majority class | 59.0 | - | - | - | - | - | - | - | - | - | - | - | 1 |" in md
    assert "| bbh:navigate | majority class | 58.0 | - |" in md


def test_transfer_leaderboard_compares_prompts_on_the_target_model(tmp_path):
    """Prompts optimized on model a and scored on model b: their own table, whose reference is the zero-shot-CoT
    prompt scored on b, with p-values on b's test examples and the source's optimization cost."""
    zs = write_run(tmp_path, method="zs-cot", model="a", correct=ZS)
    gr = write_run(tmp_path, method="greater", model="a", correct=GREATER[0], cost=COST, dev=0.9)
    write_run(tmp_path, method="zs-cot", model="b", source=zs, correct=[0] * 10, prompt="Let's think step by step.")
    on_b = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # 5 better than zs-cot on b, none worse
    write_run(tmp_path, method="greater", model="b", source=gr, correct=on_b, prompt="p",
              other_readings={"options": 0.9})
    records = load_records(tmp_path)
    board = report.transfer_leaderboard(records)
    assert set(board["model"]) == {"a -> b"} and set(board["method"]) == {"zs-cot", "greater"}
    g = _row(board, T1, "greater")
    assert g["accuracy"] == pytest.approx(0.5) and g["delta_vs_zs_cot"] == pytest.approx(0.5)
    assert g["p_vs_zs_cot"] == pytest.approx(mcnemar_exact(5, 0)) == pytest.approx(2 / 32)
    assert (g["tokens"], g["calls"], g["wall_seconds"]) == (150, 12, 60)  # what the prompt cost to make, on a
    assert math.isnan(g["dev_accuracy"]) and g["options_accuracy"] == pytest.approx(0.9)
    # the optimize cells keep their own leaderboard: a on a only
    assert set(report.leaderboard(records)["model"]) == {"a"}
    md = render.to_markdown(report.leaderboard(records), report.transfer_matrices(records), board)
    assert "### transfer a -> b, preset cpu: per task (test acc: greedy reading)" in md
    # dev % and dev−test: measured on the source model, left out; prompt "p" is 1 token; leakage unknown (no data)
    assert "| bbh:navigate | greater | 50.0 [0-100] | 90.0 | +50.0 | 0.062 | - | - | - | 1 | - | - | 150 | 12 | 1m00s | 1 |" in md
    page = render.page(records, with_plots=False)
    assert "<h2>transfer a -&gt; b, preset cpu: per task (test acc: greedy reading)</h2>" in page


def test_transfer_matrix_cells_average_the_same_tasks(tmp_path):
    """Model b optimized on T1 only: every cell of the matrix averages T1 alone, the tasks are named, and the
    per-task table keeps everything."""
    a1 = write_run(tmp_path, method="greater", task=T1, model="a", correct=[1, 0])
    a2 = write_run(tmp_path, method="greater", task=T2, model="a", correct=[1, 1])
    b1 = write_run(tmp_path, method="greater", task=T1, model="b", correct=[0, 0, 0, 1])
    write_run(tmp_path, method="greater", task=T1, model="b", source=a1, correct=[1, 1, 1, 1])
    write_run(tmp_path, method="greater", task=T2, model="b", source=a2, correct=[0, 0, 0, 0])
    write_run(tmp_path, method="greater", task=T1, model="a", source=b1, correct=[0, 0])
    records = load_records(tmp_path)
    m = report.transfer_matrices(records)[("cpu", "greater")]
    assert m.attrs["tasks"] == [T1]
    assert (m.loc["a", "a"], m.loc["a", "b"], m.loc["b", "a"], m.loc["b", "b"]) == (0.5, 1.0, 0.0, 0.25)
    assert len(report.transfer_table(records)) == 6  # T2 is still in the per-task table
    assert report.matrix_title("cpu", "greater", m) == f"greater (preset cpu), test accuracy % on {T1}"
    md = render.to_markdown(report.leaderboard(records), report.transfer_matrices(records))
    assert f"### transfer: greater (preset cpu), test accuracy % on {T1}" in md

    b2 = write_run(tmp_path, method="greater", task=T2, model="b", correct=[1, 1])  # b optimized on T2 too ...
    write_run(tmp_path, method="greater", task=T2, model="a", source=b2, correct=[1, 1])  # ... and scored on a
    m2 = report.transfer_matrices(load_records(tmp_path))[("cpu", "greater")]
    assert m2.attrs["tasks"] == sorted([T1, T2]) and m2.loc["b", "a"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert "averaged over 2 tasks (" in report.matrix_title("cpu", "greater", m2)
    assert report.matrix_title("cpu", "greater", m2, short=True) == "greater (preset cpu), test accuracy % averaged over 2 tasks"


def test_paired_correctness_survives_without_predictions_file(tmp_path):
    """predictions.jsonl stays out of git; summary.json's compact copy keeps paired tests possible."""
    from harness.core.spec import RunSpec
    from harness.reports.loading import load_record
    from harness.runner.records import RunFolder

    spec = RunSpec(kind="optimize", task="bbh:navigate", model="m", data="d", method="greater", preset="cpu")
    folder = RunFolder(tmp_path, spec)
    folder.start()
    preds = [{"id": f"x/{i}", "options_correct": i % 3 == 0, "greedy_correct": False} for i in range(7)]
    test = {"n": 7, "primary": "options", "readings": {"options": {"accuracy": 3 / 7, "ci95": [0.1, 0.8]}}}
    folder.finish({"prompt": "p", "test_accuracy": 3 / 7, "primary": "options", "test": test, "cost": {}}, preds)
    with_file = load_record(folder.path)
    (folder.path / "predictions.jsonl").unlink()
    without = load_record(folder.path)
    assert without.correct == with_file.correct == {f"x/{i}": i % 3 == 0 for i in range(7)}


def test_average_over_tasks_uses_the_seeds_every_task_has(tmp_path):
    """A grid run in parts: seeds 0-1 on one task, seed 0 on the other. The average row is over seed 0 (its
    `seeds` column says 1), not a mix of a two-seed mean and a one-seed value."""
    write_run(tmp_path, method="opro", task=T1, seed=0, correct=[1, 1, 0, 0])  # 0.50
    write_run(tmp_path, method="opro", task=T1, seed=1, correct=[1, 1, 1, 1])  # 1.00
    write_run(tmp_path, method="opro", task=T2, seed=0, correct=[1, 0, 0, 0])  # 0.25
    board = report.leaderboard(load_records(tmp_path))
    avg = _row(board, "average", "opro")
    assert avg["seeds"] == 1 and avg["accuracy"] == pytest.approx((0.50 + 0.25) / 2)
    assert _row(board, T1, "opro")["accuracy"] == pytest.approx(0.75)  # the task's own row keeps both seeds


def test_transfer_diagonal_averages_only_the_seeds_whose_prompts_were_transferred(tmp_path):
    """Seeds 0-2 optimized on a, only seed 0's prompt scored on b: the row compares seed 0 with seed 0."""
    cells = {s: write_run(tmp_path, method="greater", task=T1, model="a", seed=s, correct=c)
             for s, c in ((0, [1, 0, 0, 0]), (1, [1, 1, 0, 0]), (2, [1, 1, 1, 1]))}
    write_run(tmp_path, method="greater", task=T1, model="b", source=cells[0], correct=[1, 1, 1, 0])
    records = load_records(tmp_path)
    m = report.transfer_matrices(records)[("cpu", "greater")]
    assert (m.loc["a", "a"], m.loc["a", "b"]) == (0.25, 0.75)  # not (0.25 + 0.5 + 1) / 3 on the diagonal
    table = report.transfer_table(records)
    assert table.loc[table["target_model"] == "a", "seeds"].tolist() == [1]
