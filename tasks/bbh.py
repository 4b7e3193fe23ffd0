"""BIG-Bench Hard: 27 tasks named "bbh:<file stem>", each with its answer format.

Formats: option letters (per-example options parsed from the "Options:\\n(A) ..." lines of the input and
stored in Example.meta["options"]; the task-level `options` are all letters the task's file uses), yes/no
(causal_judgement, navigate and web_of_lies spell "Yes"/"No", sports_understanding "yes"/"no"), True/False
(boolean_expressions), valid/invalid (formal_fallacies), integers (object_counting, multistep_arithmetic_two)
and free text (word_sorting; dyck_languages, scored with all whitespace removed).

Splits (`load(data_dir=None, seed=None)`): rows [0,50) train, [50,150) dev, [150,n) test, in file order as
TextGrad and GReaTer did, when the test keeps at least 50 rows. Three tasks are shorter (penguins_in_a_table
146 rows, snarks 178, causal_judgement 187): train keeps 50 and the remaining rows are halved between dev and
test, dev getting the smaller half (penguins 50/48/48, snarks 50/64/64, causal_judgement 50/68/69). An
integer seed shuffles all rows with random.Random(seed) before cutting. Example ids are "bbh:<task>/<row>".

Data quirks, kept as published (they count as wrong for every method, as in the paper's numbers):
- movie_recommendation row 163 has the gold "Monsters, Inc" (the options split the title into "(A) Monsters"
  and "(B) Inc"), not a letter;
- ruin_names rows 99 and 144 have the golds "dearth, wind, & fire" and "rita, sue and bob poo", not letters.
No reading ever returns such a string, so these rows can never be matched.
"""

from __future__ import annotations

import os
from functools import partial

from harness.core.types import AnswerFormat, Example, Splits, Task
from tasks import formats
from tasks.base import make_task
from tasks.loader import Rows, fetch, make_splits, order_words, shuffled, source_words

HUB_REPO = "lukaemon/bbh"

# Letter tasks and how many option letters their file uses (A.., checked against the data by the tests).
LETTER_TASKS: dict[str, int] = {
    "date_understanding": 6,
    "disambiguation_qa": 4,
    "geometric_shapes": 11,
    "hyperbaton": 2,
    "logical_deduction_five_objects": 5,
    "logical_deduction_seven_objects": 7,
    "logical_deduction_three_objects": 3,
    "movie_recommendation": 5,
    "penguins_in_a_table": 5,
    "reasoning_about_colored_objects": 18,
    "ruin_names": 11,
    "salient_translation_error_detection": 6,
    "snarks": 2,
    "temporal_sequences": 4,
    "tracking_shuffled_objects_five_objects": 5,
    "tracking_shuffled_objects_seven_objects": 7,
    "tracking_shuffled_objects_three_objects": 3,
}
WORD_TASKS: dict[str, tuple[AnswerFormat, tuple[str, str]]] = {
    "boolean_expressions": (AnswerFormat.TRUE_FALSE, ("True", "False")),
    "causal_judgement": (AnswerFormat.YES_NO, ("Yes", "No")),
    "formal_fallacies": (AnswerFormat.VALID_INVALID, ("valid", "invalid")),
    "navigate": (AnswerFormat.YES_NO, ("Yes", "No")),
    "sports_understanding": (AnswerFormat.YES_NO, ("yes", "no")),
    "web_of_lies": (AnswerFormat.YES_NO, ("Yes", "No")),
}
INTEGER_TASKS = ("multistep_arithmetic_two", "object_counting")
FREE_TEXT_TASKS = ("dyck_languages", "word_sorting")

BBH_TASKS: tuple[str, ...] = tuple(sorted([*LETTER_TASKS, *WORD_TASKS, *INTEGER_TASKS, *FREE_TEXT_TASKS]))
NOT_IN_PAPER = (
    "dyck_languages",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "word_sorting",
)
BBH21: tuple[str, ...] = tuple(t for t in BBH_TASKS if t not in NOT_IN_PAPER)

TRAIN, DEV, MIN_TEST = 50, 100, 50


def answer_format(stem: str) -> tuple[AnswerFormat, tuple[str, ...]]:
    """The answer format of a BBH task and its task-level options."""
    if stem in LETTER_TASKS:
        return AnswerFormat.LETTER, formats.letters(LETTER_TASKS[stem])
    if stem in WORD_TASKS:
        return WORD_TASKS[stem]
    if stem in INTEGER_TASKS:
        return AnswerFormat.INTEGER, ()
    if stem in FREE_TEXT_TASKS:
        return AnswerFormat.FREE_TEXT, ()
    raise KeyError(stem)


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, dev, test) sizes for a task with n rows."""
    if n - TRAIN - DEV >= MIN_TEST:
        return TRAIN, DEV, n - TRAIN - DEV
    rest = max(n - TRAIN, 0)
    return min(TRAIN, n), rest // 2, rest - rest // 2


def bbh_task(stem: str) -> Task:
    fmt, options = answer_format(stem)
    return make_task(
        f"bbh:{stem}",
        fmt,
        options,
        partial(load_bbh, stem),
        description=f"BIG-Bench Hard {stem} ({fmt.value} answers)",
        compact=stem == "dyck_languages",
    )


def _examples(stem: str, rows: Rows) -> list[Example]:
    fmt, task_options = answer_format(stem)
    out = []
    for i in range(len(rows.items)):
        question = rows.field(i, "input")
        raw = rows.field(i, "target")
        meta: dict[str, object] = {"row": i}
        options = task_options
        if fmt is AnswerFormat.LETTER:
            options = formats.parse_letter_options(question) or task_options
            meta["options"] = options
        target = formats.normalise_gold(fmt, raw, options)
        out.append(Example(id=f"bbh:{stem}/{i}", input=question, target=target, meta=meta))
    return out


def load_bbh(stem: str, data_dir: str | os.PathLike[str] | None = None, seed: int | None = None) -> Splits:
    name = f"bbh:{stem}"
    relpath = f"bbh/{stem}.json"
    rows = fetch(name, data_dir, relpath, (HUB_REPO, stem, "test"))
    examples = shuffled(_examples(stem, rows), seed)
    n_train, n_dev, n_test = split_sizes(len(examples))
    rule = (
        f"{name}: {len(examples)} rows of {source_words(rows, relpath)} {order_words(seed)}; "
        f"first {n_train} train, next {n_dev} dev, remaining {n_test} test"
    )
    if (n_train, n_dev) != (TRAIN, DEV):
        short = TRAIN + DEV + MIN_TEST
        rule += f" (under {short} rows: after train the rest is halved, dev the smaller half)"
    train = examples[:n_train]
    dev = examples[n_train : n_train + n_dev]
    test = examples[n_train + n_dev :]
    return make_splits(name, train, dev, test, rule)
