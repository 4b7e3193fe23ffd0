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
from tasks.loader import Rows, fetch, make_splits, order_words, shuffled, source_words

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
    train_rows = fetch(NAME, data_dir, "gsm8k/train.jsonl", (HUB_REPO, "main", "train"))
    test_rows = fetch(NAME, data_dir, "gsm8k/test.jsonl", (HUB_REPO, "main", "test"))
    pool = shuffled(_examples(train_rows, "train"), seed)
    test = _examples(test_rows, "test")
    rule = (
        f"{NAME}: {len(pool)} rows of {source_words(train_rows, 'gsm8k/train.jsonl')} {order_words(seed)}; "
        f"first {TRAIN} train, next {DEV} dev; test = all {len(test)} rows of "
        f"{source_words(test_rows, 'gsm8k/test.jsonl')} in file order"
    )
    return make_splits(NAME, pool[:TRAIN], pool[TRAIN : TRAIN + DEV], test, rule)
