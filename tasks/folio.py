"""FOLIO: first-order-logic natural language inference, asked as a three-option letter question.

Input: the premises joined by newlines, then "Conclusion: <conclusion>", then
"Is the conclusion True, False, or Uncertain?\\nOptions:\\n(A) True\\n(B) False\\n(C) Uncertain".
Gold: A (True), B (False) or C (Uncertain; folio-train.jsonl of release v0.0 spells it "Unknown").

Splits (`load(data_dir=None, seed=None)`): rows [0,100) of folio-train.jsonl are train, [100,200) dev (an
integer seed shuffles the 1,004 train rows with random.Random(seed) before cutting); test is all of
folio-validation.jsonl (204 rows, file order). Ids: "folio/train/<row>", "folio/validation/<row>".
The hub's yale-nlp/FOLIO is a later, gated release (premises as one string, slightly different rows), so
numbers from it are not comparable with runs on the v0.0 files.
"""

from __future__ import annotations

import os

from harness.core.types import AnswerFormat, BenchError, Example, Splits, Task
from tasks.base import make_task
from tasks.loader import Rows, pool_and_test_splits

NAME = "folio"
HUB_REPO = "yale-nlp/FOLIO"
TRAIN, DEV = 100, 100
OPTIONS = ("A", "B", "C")
LABELS = {"true": "A", "false": "B", "uncertain": "C", "unknown": "C"}
QUESTION = "Is the conclusion True, False, or Uncertain?\nOptions:\n(A) True\n(B) False\n(C) Uncertain"


def folio_task() -> Task:
    description = "FOLIO first-order-logic inference (A True / B False / C Uncertain)"
    return make_task(NAME, AnswerFormat.LETTER, OPTIONS, load_folio, description=description)


def format_input(premises: str | list[str], conclusion: str) -> str:
    lines = premises if isinstance(premises, list) else str(premises).splitlines()
    body = "\n".join(str(p).strip() for p in lines if str(p).strip())
    return f"{body}\nConclusion: {conclusion.strip()}\n{QUESTION}"


def _examples(rows: Rows, part: str) -> list[Example]:
    out = []
    for i in range(len(rows.items)):
        premises = rows.field(i, "premises", (list, str))
        conclusion = rows.field(i, "conclusion")
        label = str(rows.field(i, "label")).strip().lower()
        if label not in LABELS:
            where = rows.where(i)
            raise BenchError(f"malformed data in {where}: label {label!r} is not True/False/Uncertain")
        meta = {"row": i, "file": part, "options": OPTIONS}
        question = format_input(premises, conclusion)
        out.append(Example(id=f"{NAME}/{part}/{i}", input=question, target=LABELS[label], meta=meta))
    return out


def load_folio(data_dir: str | os.PathLike[str] | None = None, seed: int | None = None) -> Splits:
    return pool_and_test_splits(NAME, data_dir, seed, _examples, train=("folio/folio-train.jsonl", (HUB_REPO, None, "train")),
                                test=("folio/folio-validation.jsonl", (HUB_REPO, None, "validation")), n_train=TRAIN, n_dev=DEV)
