"""`bench leaderboard --targets paper`: the GReaTer paper's Table 1 and 3 beside measured numbers, on fabricated
paper-preset records (reproduced / not reproduced / not run) and on the committed CPU records (all "not run")."""

from __future__ import annotations

from pathlib import Path

import pytest
from gridworld import write_run
from typer.testing import CliRunner

from harness.cli import app
from harness.core.types import BenchError
from harness.reports import leaderboard as report
from harness.reports.loading import load_records
from harness.reports.targets import compare, load_targets
from tasks.bbh import BBH21

LLAMA, GEMMA = "meta-llama/Meta-Llama-3-8B-Instruct", "google/gemma-2-9b-it"
TRANSFER5 = ("movie_recommendation", "object_counting", "tracking_shuffled_objects_five_objects", "hyperbaton",
             "causal_judgement")


def _correct(pct: int) -> list[bool]:
    return [i < pct for i in range(100)]


def test_the_stored_numbers_are_the_papers():
    t = load_targets("paper")
    assert sorted(t["groups"]["bbh21"]) == sorted(BBH21) and (t["preset"], t["reading"]) == ("paper", "greedy")
    by = {(r["model"], r["task"], r["method"]): r["value"] for r in t["targets"]}
    assert len(by) == 36 + 8
    assert by[(GEMMA, "bbh21", "greater")] == 76.6 and by[(LLAMA, "gsm8k", "zs-cot")] == 79.6
    assert by[(LLAMA, "folio", "pe2")] == 62.6 and by[(f"{GEMMA} -> {LLAMA}", "transfer5", "textgrad")] == 42.8
    with pytest.raises(BenchError, match="did you mean 'paper'"):
        load_targets("papers")


def test_verdicts_on_fabricated_paper_records(tmp_path):
    write_run(tmp_path, method="greater", task="gsm8k", model=GEMMA, preset="paper", correct=_correct(90))  # 89.4: +0.6
    write_run(tmp_path, method="zs-cot", task="gsm8k", model=GEMMA, preset="paper", correct=_correct(80))  # 88.6: -8.6
    write_run(tmp_path, method="zs-cot", task="folio", model=GEMMA, preset="cpu", correct=_correct(65))  # wrong preset
    for i, task in enumerate(BBH21):  # mean 62.0 over the 21 tasks: 62.2 -> reproduced
        write_run(tmp_path, method="zs-cot", task=f"bbh:{task}", model=LLAMA, preset="paper",
                  correct=_correct(52 + 20 * (i % 2) if i < 20 else 62))
    for task in BBH21[:20]:  # one task short: not run
        write_run(tmp_path, method="ape", task=f"bbh:{task}", model=LLAMA, preset="paper", correct=_correct(60))
    for task in TRANSFER5:  # Llama's GReaTer prompts on Gemma: 76.0 vs 76.2
        src = write_run(tmp_path, method="greater", task=f"bbh:{task}", model=LLAMA, preset="paper", correct=_correct(50))
        write_run(tmp_path, method="greater", model=GEMMA, source=src, correct=_correct(76))
    records = load_records(tmp_path)
    t = load_targets("paper")
    df = compare(t, report.leaderboard(records), report.transfer_leaderboard(records)).set_index(["model", "task", "method"])
    row = lambda *k: df.loc[k]  # noqa: E731
    assert row(GEMMA, "gsm8k", "greater")["verdict"] == "reproduced"
    assert row(GEMMA, "gsm8k", "greater")["difference"] == pytest.approx(0.6)
    assert row(GEMMA, "gsm8k", "zs-cot")["verdict"] == "not reproduced"
    assert row(GEMMA, "gsm8k", "zs-cot")["measured"] == pytest.approx(80.0)
    assert row(GEMMA, "folio", "zs-cot")["verdict"] == "not run"  # only a cpu-preset run
    bbh = row(LLAMA, "bbh21", "zs-cot")
    assert bbh["measured"] == pytest.approx(62.0) and bbh["verdict"] == "reproduced" and bbh["tasks_run"] == "21/21"
    assert row(LLAMA, "bbh21", "ape")["verdict"] == "not run" and row(LLAMA, "bbh21", "ape")["tasks_run"] == "20/21"
    moved = row(f"{LLAMA} -> {GEMMA}", "transfer5", "greater")
    assert moved["measured"] == pytest.approx(76.0) and moved["verdict"] == "reproduced"
    assert (df["verdict"] == "reproduced").sum() == 3
    res = CliRunner().invoke(app, ["leaderboard", "--results", str(tmp_path), "--targets", "paper"])
    assert res.exit_code == 0, res.output
    assert f"| {GEMMA} | gsm8k | greater | 89.4 | 90.0 | +0.6 | reproduced | 1/1 |" in res.output


def test_the_committed_cpu_records_are_not_run():
    results = Path(__file__).parent.parent / "results"
    records = load_records(results, steps=False)
    df = compare(load_targets("paper"), report.leaderboard(records), report.transfer_leaderboard(records))
    assert len(df) == 44 and set(df["verdict"]) == {"not run"}
