"""GSM8K: grade-school math word problems with integer answers.

Input = the question as written. Gold = the text after "####" in the answer, thousands separators removed
("1,080" -> "1080"); the worked solution before "####" is kept in Example.meta["rationale"].

Splits (`load(data_dir=None, seed=None)`): the first 100 rows of train.jsonl are train, the next 100 dev
(in file order; an integer seed shuffles the 7,473 train.jsonl rows with random.Random(seed) before
cutting); test is all of test.jsonl (1,319 rows, always in file order). Ids: "gsm8k/train/<row>",
"gsm8k/test/<row>".
"""

from __future__ import annotations

import os

from harness.core.types import AnswerFormat, BenchError, Example, Splits, Task
from tasks import formats
from tasks.base import make_task
from tasks.loader import Rows, pool_and_test_splits

NAME = "gsm8k"
HUB_REPO = "openai/gsm8k"
TRAIN, DEV = 100, 100


def gsm8k_task() -> Task:
    description = "GSM8K grade-school math word problems (integer answers)"
    return make_task(NAME, AnswerFormat.INTEGER, (), load_gsm8k, description=description)


def _examples(rows: Rows, part: str) -> list[Example]:
    out = []
    for i in range(len(rows.items)):
        question = rows.field(i, "question")
        answer = rows.field(i, "answer")
        if "####" not in answer:
            raise BenchError(f"malformed data in {rows.where(i)}: the answer has no '#### <number>' line")
        rationale, gold = answer.rsplit("####", 1)
        target = formats.normalise_gold(AnswerFormat.INTEGER, gold)
        meta = {"row": i, "file": part, "rationale": rationale.strip()}
        out.append(Example(id=f"{NAME}/{part}/{i}", input=question, target=target, meta=meta))
    return out


def load_gsm8k(data_dir: str | os.PathLike[str] | None = None, seed: int | None = None) -> Splits:
    return pool_and_test_splits(NAME, data_dir, seed, _examples, train=("gsm8k/train.jsonl", (HUB_REPO, "main", "train")),
                                test=("gsm8k/test.jsonl", (HUB_REPO, "main", "test")), n_train=TRAIN, n_dev=DEV)
