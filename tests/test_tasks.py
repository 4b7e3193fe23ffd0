"""Tasks: answer formats (reading, scoring, extractor texts) and task names. (Splits, data sources and custom
tasks: test_tasks_data.py.)"""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from harness.core.types import AnswerFormat, BenchError, Example
from tasks import expand_tasks, get_task, task_names
from tasks import formats as F

L, YN, TF, VI, INT, FT = (
    AnswerFormat.LETTER,
    AnswerFormat.YES_NO,
    AnswerFormat.TRUE_FALSE,
    AnswerFormat.VALID_INVALID,
    AnswerFormat.INTEGER,
    AnswerFormat.FREE_TEXT,
)
ABC = ("A", "B", "C")



def ex(options: tuple[str, ...] | None = None, target: str = "A") -> Example:
    meta = {"options": options} if options is not None else {}
    return Example(id="t/0", input="q", target=target, meta=meta)


# ------------------------------------------------------------------------------------------ greedy reading


@pytest.mark.parametrize(
    "fmt, text, options, expected",
    [
        (L, "A", ABC, "A"),
        (L, " (B) because", ABC, "B"),
        (L, "$C$", ABC, "C"),
        (L, "A) the first", ABC, "A"),
        (L, "'B'", ABC, "B"),
        (L, "D", ABC, None),  # not one of this example's options
        (L, "Answer: B", ABC, None),  # strict: the answer must come first
        (L, "Apple", ABC, None),
        (L, "", ABC, None),
        (YN, " Yes.", ("Yes", "No"), "Yes"),
        (YN, "no", ("Yes", "No"), "No"),
        (YN, "Yes", ("yes", "no"), "yes"),  # sports_understanding spelling
        (YN, "NO$", ("yes", "no"), "no"),
        (YN, "Yesterday", ("Yes", "No"), None),
        (YN, "Maybe", ("Yes", "No"), None),
        (TF, "True$", ("True", "False"), "True"),
        (TF, " false", ("True", "False"), "False"),
        (VI, "invalid", ("valid", "invalid"), "invalid"),
        (VI, " Valid.", ("valid", "invalid"), "valid"),
        (VI, "invalidated", ("valid", "invalid"), None),
        (INT, "-12$", (), "-12"),
        (INT, "1,234", (), "1234"),
        (INT, "$1,234", (), "1234"),
        (INT, "18.00$", (), "18"),
        (INT, "2.5", (), "2.5"),
        (INT, " 42 apples", (), "42"),
        (INT, "+7", (), "7"),
        (INT, "12th", (), None),
        (INT, "twelve", (), None),
        (FT, " apple banana cherry.\nmore text", (), "apple banana cherry"),
        (FT, "$] ] >$", (), "] ] >"),
        (FT, "  \n", (), None),
    ],
)
def test_extract(fmt, text, options, expected):
    assert F.extract(fmt, text, options) == expected


@pytest.mark.parametrize(
    "fmt, text, options, expected",
    [
        (L, "(A) is wrong; (B) fits. So the answer is (B).", ABC, "B"),
        (L, "(C) looks right but what about (Z)?", ABC, "C"),  # Z is not an option
        (L, "no option in parentheses: B", ABC, None),
        (YN, "Yes, at first; but no. So the answer is No", ("Yes", "No"), "No"),
        (YN, "No one disagrees, so yes.", ("yes", "no"), "yes"),
        (YN, "Nobody knows", ("Yes", "No"), None),
        (TF, "not False is True, so the whole is False.", ("True", "False"), "False"),
        (VI, "The argument is invalid.", ("valid", "invalid"), "invalid"),  # "invalid" contains "valid"
        (VI, "not invalid: it is valid", ("valid", "invalid"), "valid"),
        (VI, "invalidated premises", ("valid", "invalid"), None),
        (VI, "a prevalid step", ("valid", "invalid"), None),  # whole words only
        (YN, "Noyes", ("Yes", "No"), None),
        (INT, "5 - 3 = 2, so she pays $1,234.00.", (), "1234"),
        (INT, "20-8=12", (), "12"),
        (INT, "the result is -7", (), "-7"),
        (INT, "(-3 + 4) * 2 = 2, minus 5 is -3.", (), "-3"),
        (INT, "about 2.5 each", (), "2.5"),
        (INT, "no numbers here", (), None),
        (FT, "sorted: apple banana", (), None),
    ],
)
def test_extract_fallback(fmt, text, options, expected):
    assert F.extract_fallback(fmt, text, options) == expected


# ------------------------------------------------------------------------------------------ gold, scoring


@pytest.mark.parametrize(
    "fmt, raw, options, expected",
    [
        (L, "(C)", (), "C"),
        (L, "Monsters, Inc", (), "Monsters, Inc"),  # BBH quirk kept as is
        (YN, "yes", ("yes", "no"), "yes"),
        (YN, "Yes", ("Yes", "No"), "Yes"),
        (VI, "invalid", ("valid", "invalid"), "invalid"),
        (INT, " -12 ", (), "-12"),
        (INT, "1,234", (), "1234"),
        (INT, "Janet sells 16 - 3 - 4 = 9 eggs.\n#### 1,080", (), "1080"),
        (FT, " a b c ", (), "a b c"),
    ],
)
def test_normalise_gold(fmt, raw, options, expected):
    assert F.normalise_gold(fmt, raw, options) == expected


@pytest.mark.parametrize(
    "fmt, pred, gold, compact, expected",
    [
        (L, "C", "C", False, True),
        (L, "B", "C", False, False),
        (L, None, "C", False, False),
        (L, "M", "Monsters, Inc", False, False),
        (YN, "Yes", "yes", False, True),  # closed sets: case-insensitive
        (YN, "No", "yes", False, False),
        (VI, "valid", "invalid", False, False),
        (INT, "1234", "1,234", False, True),
        (INT, "018", "18", False, True),
        (INT, "2.5", "2", False, False),
        (INT, "-12", "12", False, False),
        (INT, None, "3", False, False),
        (FT, "Apple  Banana", "apple banana", False, True),
        (FT, "banana apple", "apple banana", False, False),
        (FT, "applebanana", "apple banana", False, False),
        (FT, "]]>", "] ] >", True, True),  # dyck_languages: all whitespace removed
        (FT, "]>]", "] ] >", True, False),
    ],
)
def test_score(fmt, pred, gold, compact, expected):
    assert F.score(fmt, pred, gold, compact=compact) is expected


def test_task_scoring_dyck_and_word_sorting_differ():
    assert get_task("bbh:dyck_languages").score("]]  >", "] ] >")
    assert not get_task("bbh:word_sorting").score("applebanana", "apple banana")
    assert get_task("bbh:word_sorting").score("Apple banana", "apple  banana")


# ------------------------------------------------------------------------------------------ extractor texts


def test_extractor_texts():
    two = "Therefore, the final answer (use exact format: '$A' or '$B') is $"
    assert F.extractor_text(L, ("A", "B")) == two
    three = "Therefore, the final answer (use exact format: '$A' or '$B' or '$C') is $"
    assert F.extractor_text(L, ABC) == three
    assert get_task("bbh:navigate").extractor(ex()) == (
        "Therefore, the final answer (use exact format: '$ Yes' or '$ No') is $ "
    )
    assert get_task("bbh:sports_understanding").extractor(ex()) == (
        "Therefore, the final answer (use exact format: '$ yes' or '$ no') is $ "
    )
    assert get_task("bbh:boolean_expressions").extractor(ex()) == (
        "Therefore, the final answer (use exact format: '$ True' or '$ False') is $ "
    )
    assert get_task("bbh:formal_fallacies").extractor(ex()) == (
        "Therefore, the final answer (use exact format: '$ valid' or '$ invalid') is $ "
    )
    integer = (
        "Therefore, the final answer (use exactly this format: $NUMBER$, where NUMBER is a positive or "
        "negative integer) is $"
    )
    assert get_task("gsm8k").extractor(ex()) == integer
    assert get_task("bbh:object_counting").extractor(ex()) == integer
    assert get_task("bbh:word_sorting").extractor(ex()) == "Therefore, the final answer is: "


def test_letter_task_uses_each_examples_options():
    task = get_task("bbh:disambiguation_qa")  # the task uses A-D, most examples list A-C
    three = ex(ABC)
    assert task.extractor(three) == F.extractor_text(L, ABC)
    assert "'$C' or '$D'" in task.extractor(ex(("A", "B", "C", "D")))
    assert task.extract("D", three) is None
    assert task.extract("D", ex(("A", "B", "C", "D"))) == "D"
    assert task.extract_fallback("(D) then (B)", three) == "B"
    assert get_task("folio").extract("(C) Uncertain", ex()) == "C"  # task-level options when meta has none


def test_tasks_pickle():
    task = pickle.loads(pickle.dumps(get_task("bbh:sports_understanding")))
    assert task.extract(" Yes", ex()) == "yes" and task.score("yes", "yes")


# ------------------------------------------------------------------------------------------ names


def test_names_and_groups():
    names = task_names()
    assert len(names) == 29 and len(set(names)) == 29
    assert "gsm8k" in names and "folio" in names and "bbh:navigate" in names
    assert len(expand_tasks("bbh")) == 27
    bbh21 = expand_tasks("bbh21")
    assert len(bbh21) == 21
    for left_out in ("dyck_languages", "word_sorting", "logical_deduction_three_objects",
                     "tracking_shuffled_objects_seven_objects"):
        assert f"bbh:{left_out}" not in bbh21
    got = expand_tasks("bbh:navigate, gsm8k,bbh21,gsm8k")
    assert got[:2] == ["bbh:navigate", "gsm8k"] and len(got) == 22 and len(set(got)) == 22
    assert expand_tasks(["folio", "custom:x.jsonl"]) == ["folio", "custom:x.jsonl"]


def test_unknown_task_did_you_mean():
    with pytest.raises(BenchError, match=r"did you mean 'bbh:navigate'.*bench tasks"):
        get_task("bbh:navigat")
    with pytest.raises(BenchError, match=r"did you mean 'gsm8k'"):
        expand_tasks("bbh21,gsm8")
    with pytest.raises(BenchError, match=r"group 'bbh21'"):
        expand_tasks("bbh2")


def test_import_reads_no_files():
    code = (
        "import sys\n"
        "opened = []\n"
        "sys.addaudithook(lambda e, a: opened.append(str(a[0])) if e == 'open' else None)\n"
        "import tasks\n"
        "bad = [p for p in opened if p.endswith(('.json', '.jsonl'))]\n"
        "print(bad, 'datasets' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] False False"
