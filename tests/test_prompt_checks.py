"""What the leaderboard measures on a found prompt: leakage of task rows into it, its length, and the dev - test
gap of the cell (fabricated records with known answers)."""

from __future__ import annotations

import json
import math

import pytest
from gridworld import write_run

from harness.core.text import prompt_tokens
from harness.core.types import Example, Splits
from harness.evaluation.prompt_checks import FLAG_WORDS, leakage, longest_shared_run
from harness.reports import leaderboard as report
from harness.reports import render
from harness.reports.loading import load_records, with_leakage

QUESTION = "If you follow these instructions, do you return to the starting point? Always face forward. Take 7 steps left."


def _splits() -> Splits:
    ex = lambda split, i, text, gold: Example(id=f"{split}{i}", input=text, target=gold)  # noqa: E731
    return Splits(train=(ex("train", 0, "Take 3 steps. Turn around.", "No"),),
                  dev=(ex("dev", 0, "Turn left. Take 2 steps.", "Yes"),),
                  test=(ex("test", 0, QUESTION, "No"), ex("test", 1, "Always face forward.", "Yes")), rule="by hand")


def test_longest_shared_run_by_hand():
    assert longest_shared_run("Think: do you RETURN to the starting point?", ["x", QUESTION]) == (
        7, "do you return to the starting point", 1)
    assert longest_shared_run("nothing in common", ["abc def"]) == (0, "", -1)
    assert longest_shared_run("", ["a"]) == (0, "", -1)


def test_leakage_names_the_split_field_and_row():
    copied = "Answer this: " + QUESTION.split("?")[0]  # 12 words of test row 0
    got = leakage(copied, _splits())
    assert got == {"words": 12, "split": "test", "field": "input", "example": "test0",
                   "text": "if you follow these instructions do you return to the starting point"}
    assert leakage("Take 3 steps first.", _splits())["split"] == "train"  # the first split holding the longest run
    assert leakage("The answer is No.", _splits())["field"] == "target" and leakage(None, _splits())["words"] == 0


def test_prompt_tokens_counts_words_and_punctuation():
    assert prompt_tokens("Let's think step by step.") == 8  # Let ' s think step by step .
    assert prompt_tokens("") == prompt_tokens(None) == 0


class _Data:
    def __init__(self, splits):
        self.calls = 0
        self.splits_ = splits

    def splits(self, task, seed=None):
        self.calls += 1
        return self.splits_


class _Missing:
    """Data that cannot be loaded here (no data folder, hub unreachable): tried once per task, not per record."""

    def __init__(self):
        self.calls = 0

    def splits(self, task, seed=None):
        from harness.core.types import BenchError

        self.calls += 1
        raise BenchError("no data")


def test_leaderboard_dev_minus_test_leak_flag_and_prompt_cost(tmp_path):
    copied = "Say: " + QUESTION.split("?")[0] + "."
    for seed, (correct, dev) in enumerate([([1] * 6 + [0] * 4, 0.9), ([1] * 4 + [0] * 6, 0.7)]):  # test .6 .4
        write_run(tmp_path, method="ape", seed=seed, correct=correct, dev=dev, prompt=copied if seed else "Be brief.")
    spec = write_run(tmp_path, method="zs-cot", correct=[1] * 5 + [0] * 5, dev=0.5, prompt="Let's think step by step.")
    summary = json.loads((tmp_path / spec.run_id / "summary.json").read_text())
    summary["test"]["mean_reasoning_tokens"] = 42.0
    (tmp_path / spec.run_id / "summary.json").write_text(json.dumps(summary))
    records = load_records(tmp_path)
    data = _Data(_splits())
    records = with_leakage(records, data)
    assert data.calls == 1 and all(r.dev_n == 1 for r in records)  # the runner scored the whole (1-row) dev split
    board = report.leaderboard(records)
    ape = board[board["method"] == "ape"].iloc[0]
    assert ape["dev_minus_test"] == pytest.approx(0.3)  # (.9 - .6 + .7 - .4) / 2
    # normal interval of a difference of proportions, averaged over 2 seeds, widened to the t interval of (.3, .3)
    half = 1.96 * math.sqrt((0.9 * 0.1 / 1 + 0.6 * 0.4 / 10 + 0.7 * 0.3 / 1 + 0.4 * 0.6 / 10) / 4)
    assert (ape["dmt_low"], ape["dmt_high"]) == pytest.approx((0.3 - half, 0.3 + half))
    assert ape["leak_words"] == 12 and ape["leak_split"] == "test"  # the worse seed
    assert ape["prompt_tokens"] == pytest.approx((prompt_tokens("Be brief.") + prompt_tokens(copied)) / 2)
    zs = board[board["method"] == "zs-cot"].iloc[0]
    assert zs["reasoning_tokens"] == 42.0 and zs["prompt_tokens"] == 8 and zs["leak_words"] < FLAG_WORDS
    md = render.to_markdown(board)
    ape_line = next(ln for ln in md.splitlines() if "| ape |" in ln)
    assert "⚠ 12 test" in ape_line and "+30.0 [" in ape_line
    assert "⚠" not in next(ln for ln in md.splitlines() if "| zs-cot |" in ln)
    unknown = report.leaderboard(load_records(tmp_path))  # no data: leakage unknown, shown as "-", never as clean
    assert math.isnan(unknown[unknown["method"] == "ape"].iloc[0]["leak_words"])
    missing = _Missing()
    assert all(r.leakage is None for r in with_leakage(load_records(tmp_path), missing)) and missing.calls == 1


def test_pareto_front_and_the_page_shows_it(tmp_path):
    from harness.reports.plots import pareto_front

    pts = [(10, 50, "a"), (20, 60, "b"), (15, 40, "c"), (30, 60, "d"), (5, 45, "e")]
    assert [p[2] for p in pareto_front(pts)] == ["e", "a", "b"]  # c is beaten by a, d by b
    write_run(tmp_path, method="ape", correct=[1, 0], dev=0.5, prompt="Be brief.")
    page = render.page(load_records(tmp_path))
    assert "<h2>Pareto: accuracy vs prompt tokens and vs inference (reasoning) tokens</h2>" in page
    assert "<th class=\"\">prompt tok</th>" in page and "<th class=\"\">leak</th>" in page
