"""Custom tasks never seen before: free-text cleaning and fallback, answer_regex, the new sidecar fields and their
one-line errors, and an end-to-end evaluation with the scripted generator."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from harness.backends.fake import ScriptedGenerator
from harness.core.types import AnswerFormat, BenchError, Example
from harness.evaluation.evaluate import evaluate
from tasks import custom_task, get_task
from tasks import formats as F

L, YN, INT, FT = AnswerFormat.LETTER, AnswerFormat.YES_NO, AnswerFormat.INTEGER, AnswerFormat.FREE_TEXT
ABC = ("A", "B", "C")


def _write(path: Path, rows: list[dict], sidecar: dict | None = None) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if sidecar is not None:
        path.with_name(path.name + ".task.json").write_text(json.dumps(sidecar))
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------------------------------ free-text cleaning


@pytest.mark.parametrize(
    "text, expected",
    [
        ('"sgn".', "sgn"),  # the bug: quotes were stripped before the period, so they stayed
        ('"sgn."', "sgn"),
        ("'sgn'.", "sgn"),
        ("'sgn.'", "sgn"),
        ("\u201csgn\u201d.", "sgn"),
        ("`sgn`.", "sgn"),
        ("**sgn**.", "sgn"),
        ('$"sgn".$', "sgn"),
        ('  "New York".  ', "New York"),
        ("U.S.", "U.S"),
        ("a b c...", "a b c"),
        ('it is "sgn"', 'it is "sgn"'),  # inner quotes kept
        ('"a" and "b"', 'a" and "b'),  # one pair only, as written (unchanged behaviour)
        ('""', ""),
        (".", ""),
    ],
)
def test_clean_free_text(text, expected):
    assert F.clean_free_text(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (' "sgn".', "sgn"),
        ('"sgn."\nmore', "sgn"),
        ("'sgn'.", "sgn"),
        (" apple banana cherry.\nmore text", "apple banana cherry"),  # as before (test_tasks)
        ("$] ] >$", "] ] >"),
        ('"".', None),
        ("  \n", None),
    ],
)
def test_free_text_greedy(text, expected):
    assert F.extract(FT, text) == expected


@pytest.mark.parametrize(
    "reasoning, expected",
    [
        ("So the answer is Paris.", "Paris"),
        ("So the answer is Paris. Let me double-check: yes.", "Paris"),  # up to the end of the first sentence
        ('Answer: "Rome".', "Rome"),
        ("The answer is: 'sgn'.", "sgn"),
        ("First the answer is Lyon; no. The final answer is **Nice**.", "Nice"),  # the last marker wins
        ("the ANSWER IS oslo", "oslo"),
        ("The answer would be New York City", "New York City"),
        ("answer = 42.", "42"),
        ("The answer is:\n\n  Bern\nDone", "Bern"),  # nothing after the marker: the next non-empty line
        ("The answer is Quito. Then I wonder what the answer is.", "Quito"),  # an empty last marker is skipped
        ("sorted: apple banana", None),  # no marker (test_tasks golden case)
        ("The answers are many", None),
        ("Answering this is hard", None),
        ("", None),
    ],
)
def test_free_text_fallback(reasoning, expected):
    assert F.extract_fallback(FT, reasoning) == expected
    assert F.free_text_fallback(reasoning) == expected


# ------------------------------------------------------------------------------------------ answer_regex


@pytest.mark.parametrize(
    "fmt, regex, text, options, greedy, fallback",
    [
        (FT, r"capital is ([^.,\n]+)", "The capital is Lima. The capital is Cusco, once.", (), "Lima", "Cusco"),
        (FT, r"capital is ([^.,\n]+)", "I don't know", (), None, None),
        (FT, r"(?i)CITY: (\w+)", "city: bern and City: Basel", (), "bern", "Basel"),
        (FT, r"capital is ([^.,\n]+)", 'the capital is "Ottawa".', (), "Ottawa", "Ottawa"),
        (FT, r"<(\w*)>", "<kiev> then <>", (), "kiev", "kiev"),  # an empty last match gives no answer: the one before
        (FT, r"\b[A-Z]{3}\b", "from LHR to CDG", (), "LHR", "CDG"),  # no group: the whole match
        (FT, r"(x)|(y)", "y only", (), None, None),  # group 1 took no part
        (INT, r"#### (\S+)", "#### 12 and later #### abc", (), "12", "12"),  # last match that is an integer
        (YN, r"verdict: (\w+)", "verdict: maybe; verdict: yes", ("yes", "no"), None, "yes"),
        (L, r"pick (\S+)", "pick (B) or pick (D)", ABC, "B", "B"),  # D is not an option
    ],
)
def test_answer_regex(fmt, regex, text, options, greedy, fallback):
    assert F.extract(fmt, text, options, answer_regex=regex) == greedy
    assert F.extract_fallback(fmt, text, options, answer_regex=regex) == fallback


@pytest.mark.parametrize(
    "pred, gold, case_sensitive, expected",
    [
        ("buenos  aires", "Buenos Aires", False, True),
        ("buenos aires", "Buenos Aires", True, False),
        ("Buenos  Aires", "Buenos Aires", True, True),
        (None, "x", True, False),
    ],
)
def test_score_case_sensitive(pred, gold, case_sensitive, expected):
    assert F.score(FT, pred, gold, case_sensitive=case_sensitive) is expected


# ------------------------------------------------------------------------------------------ sidecar fields

CAPITALS = [
    ("Australia", "Canberra"), ("Argentina", "Buenos Aires"), ("Canada", "Ottawa"), ("Peru", "Lima"),
    ("Norway", "Oslo"), ("Kenya", "Nairobi"), ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Chile", "Santiago"),
    ("Ghana", "Accra"), ("Nepal", "Kathmandu"), ("Cuba", "Havana"),
]
CAPITAL_ROWS = [{"id": c.lower(), "input": f"What is the capital of {c}?", "target": t} for c, t in CAPITALS]
SIDECAR = {
    "name": "capitals",
    "answer_format": "free_text",
    "answer_regex": r"(?i)capital is ([^.,\n]+)",
    "case_sensitive": False,
    "answer_max_tokens": 6,
    "stop": ["."],
    "splits": {"train": 2, "dev": 0.25},
}


def test_sidecar_fields_reach_the_task(tmp_path):
    task = custom_task(_write(tmp_path / "capitals.jsonl", CAPITAL_ROWS, SIDECAR))
    assert task.name == "custom:capitals" and task.answer_format is FT
    assert task.answer_max_tokens == 6 and task.answer_stop == (".",)
    splits = task.load()
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (2, 3, 7)  # 25% of 12 = 3, the rest test
    assert "declared splits" in splits.rule and "first 2 train, next 3 dev, next 7 test" in splits.rule
    assert [e.id for e in splits.train] == ["custom:capitals/australia", "custom:capitals/argentina"]
    shuffled = task.load(seed=1)
    assert len(shuffled.test) == 7 and {e.id for e in shuffled.test} != {e.id for e in splits.test}
    ex = splits.test[0]
    assert task.extract("The capital is peru's Lima", ex) == "peru's Lima"
    assert task.score("LIMA", "Lima") and task.extract_fallback("the Capital is Lima, I think", ex) == "Lima"
    assert pickle.loads(pickle.dumps(task)).extract("capital is Oslo", ex) == "Oslo"  # worker processes
    strict = custom_task(tmp_path / "capitals.jsonl", case_sensitive=True, stop="\n", answer_max_tokens=3)
    assert not strict.score("LIMA", "Lima") and strict.answer_stop == ("\n",) and strict.answer_max_tokens == 3
    # defaults are unchanged for tasks that declare nothing
    assert get_task("bbh:word_sorting").answer_stop == ("\n",) and get_task("gsm8k").answer_max_tokens == 16


def test_splits_sizes_and_rules(tmp_path):
    path = _write(tmp_path / "caps.jsonl", CAPITAL_ROWS)
    sizes = lambda s: tuple(map(len, (lambda x: (x.train, x.dev, x.test))(custom_task(path, splits=s).load())))
    assert sizes({"train": 3, "dev": 3}) == (3, 3, 6)
    assert sizes({"train": 0.5, "dev": 0.25}) == (6, 3, 3)
    assert sizes({"test": 4}) == (2, 2, 4)  # train/dev default to 20%; rows beyond the declared test left out
    assert sizes({"train": 0.01, "dev": 1}) == (1, 1, 10)  # a fraction is at least one row
    split = custom_task(path, splits={"train": 2, "dev": 2, "test": 3}).load()
    assert "last 5 unused" in split.rule


@pytest.mark.parametrize(
    "splits, message",
    [
        ({"train": -1}, r"capitals.jsonl.task.json: splits train must be a row count of at least 1 or a fraction"),
        ({"dev": 0}, r"splits dev must be a row count"),
        ({"train": 1.5}, r"splits train must be a row count"),
        ({"train": True}, r"splits train must be a row count"),
        ({"train": "5"}, r"splits train must be a row count"),
        ({"trian": 5}, r"unknown split 'trian' in splits \(did you mean 'train'\?\)"),
        ([20, 20], r"splits must be an object such as"),
        ({"train": 8, "dev": 4}, r"capitals.jsonl.task.json: splits leave no test rows: 8 train \+ 4 dev of the 12 rows of "
                                 r"capitals.jsonl"),
        ({"train": 0.6, "dev": 0.6}, r"splits leave no test rows"),
        ({"train": 5, "dev": 5, "test": 5}, r"splits ask for 5 train \+ 5 dev \+ 5 test = 15 rows, but capitals.jsonl has 12"),
    ],
)
def test_splits_errors_name_the_sidecar(tmp_path, splits, message):
    path = _write(tmp_path / "capitals.jsonl", CAPITAL_ROWS, {"splits": splits})
    with pytest.raises(BenchError, match=message) as exc:
        custom_task(path)
    assert str(tmp_path / "capitals.jsonl.task.json") in _one_line(exc)


def test_splits_and_split_fields_conflict(tmp_path):
    rows = [dict(r, split=s) for r, s in zip(CAPITAL_ROWS, ["train", "dev"] + ["test"] * 10)]
    path = _write(tmp_path / "capitals.jsonl", rows, {"splits": {"train": 2}})
    with pytest.raises(BenchError, match=r"declares splits, but every line of capitals.jsonl has a 'split' field") as exc:
        custom_task(path)
    _one_line(exc)


@pytest.mark.parametrize(
    "sidecar, message",
    [
        ({"answer_regexp": "x"}, r"unknown field\(s\) 'answer_regexp' \(did you mean 'answer_regex'\?\)"),
        ({"stops": "."}, r"'stops' \(did you mean 'stop'\?\)"),
        ({"colour": "red"}, r"unknown field\(s\) 'colour' \(known: name, answer_format"),
        ({"answer_regex": "capital is ([^.]+"}, r"answer_regex 'capital is \(\[\^.\]\+' is not a valid regular expression"),
        ({"answer_regex": ""}, r"answer_regex must be a non-empty string"),
        ({"answer_regex": 3}, r"answer_regex must be a non-empty string"),
        ({"case_sensitive": "no"}, r"case_sensitive must be true or false, not 'no'"),
        ({"answer_max_tokens": 0}, r"answer_max_tokens must be an integer of at least 1, not 0"),
        ({"answer_max_tokens": "8"}, r"answer_max_tokens must be an integer of at least 1"),
        ({"answer_max_tokens": True}, r"answer_max_tokens must be an integer of at least 1"),
        ({"stop": ""}, r"stop must be a non-empty string or a list of them"),
        ({"stop": [".", 1]}, r"stop must be a non-empty string or a list of them"),
        ({"options": "Paris"}, r"options must be a list of strings"),
        ({"extractor": 5}, r"extractor must be a string"),
    ],
)
def test_sidecar_errors_are_one_line_naming_the_file(tmp_path, sidecar, message):
    path = _write(tmp_path / "capitals.jsonl", CAPITAL_ROWS, sidecar)
    with pytest.raises(BenchError, match=message) as exc:
        custom_task(path)
    assert str(tmp_path / "capitals.jsonl.task.json") in _one_line(exc)


def test_case_sensitive_is_for_free_text_only(tmp_path):
    rows = [{"input": f"q{i}", "target": "yes" if i % 2 else "no"} for i in range(5)]
    path = _write(tmp_path / "yn.jsonl", rows, {"case_sensitive": True})
    with pytest.raises(BenchError, match=r"yn.jsonl.task.json: case_sensitive applies to free_text answers only"):
        custom_task(path)
    assert custom_task(path, case_sensitive=False).answer_format is YN  # the argument wins over the sidecar


def test_the_argument_is_named_when_it_is_wrong(tmp_path):
    path = _write(tmp_path / "capitals.jsonl", CAPITAL_ROWS)
    with pytest.raises(BenchError, match=r"custom task capitals.jsonl \(argument answer_regex\): answer_regex '\(' is not"):
        custom_task(path, answer_regex="(")


@pytest.mark.parametrize(
    "rows, sidecar, message",
    [
        # the case: letters declared, yes/no golds
        ([{"input": "q", "target": "yes"}] * 3, {"answer_format": "letter"},
         r"line 1: target 'yes' is not one of \(\) \(answer_format letter declared in .*yn.jsonl.task.json\); "
         r'fix: use "answer_format": "yes_no" in .*yn.jsonl.task.json'),
        ([{"input": "q", "target": t} for t in ("Yes", "No", "Maybe")], {"answer_format": "yes_no"},
         r"line 3: target 'Maybe' is not one of \('Yes', 'No'\) \(answer_format yes_no declared in .*yn.jsonl.task.json\); "
         r'fix: declare "options": \["Yes", "No", "Maybe"\] in .*yn.jsonl.task.json or use "answer_format": "free_text"'),
        ([{"input": "q", "target": t} for t in ("A", "B", "E")], {"answer_format": "letter", "options": ["A", "B", "C"]},
         r"line 3: target 'E' is not one of \('A', 'B', 'C'\) .*; "
         r'fix: declare "options": \["A", "B", "C", "E"\] in .*yn.jsonl.task.json or use "answer_format": "free_text"'),
        ([{"input": "q", "target": t} for t in ("1", "2", "many")], {"answer_format": "integer"},
         r"line 3: target 'many' is not an integer \(answer_format integer declared in .*yn.jsonl.task.json\); "
         r'fix: use "answer_format": "free_text" in'),
        ([{"input": "Q\nOptions:\n(A) x\n(B) y", "target": "(C)"}] * 3, None,
         r"line 1: target '\(C\)' is not one of \('A', 'B'\) \(the options this line's input lists\); "
         r"fix the gold or this line's 'Options:' list"),
    ],
)
def test_a_format_that_contradicts_the_golds_names_file_gold_and_fix(tmp_path, rows, sidecar, message):
    path = _write(tmp_path / "yn.jsonl", rows, sidecar)
    with pytest.raises(BenchError, match=message) as exc:
        custom_task(path)
    _one_line(exc)


def test_a_folder_is_not_a_task_file(tmp_path):
    folder = tmp_path / "qa.jsonl"
    folder.mkdir()
    with pytest.raises(BenchError, match=r"custom task file .*qa.jsonl is a folder: name a .jsonl file") as exc:
        get_task(f"custom:{folder}")
    assert "does not exist" not in _one_line(exc)
    (tmp_path / "data").mkdir()
    _write(tmp_path / "data" / "caps.jsonl", CAPITAL_ROWS)
    with pytest.raises(BenchError, match=r"is a folder: .*; it holds caps.jsonl: e.g. custom:.*caps.jsonl"):
        custom_task(tmp_path / "data")
    with pytest.raises(BenchError, match="does not exist"):
        custom_task(tmp_path / "nope.jsonl")


def test_free_text_golds_are_cleaned_like_answers(tmp_path):
    rows = [{"input": f"q{i}", "target": t} for i, t in enumerate(['"sgn".', "Paris.", "'Oslo'", "St. Louis"])]
    task = custom_task(_write(tmp_path / "ft.jsonl", rows, {"answer_format": "free_text", "splits": {"train": 1, "dev": 1}}))
    s = task.load()
    assert [e.target for e in (*s.train, *s.dev, *s.test)] == ["sgn", "Paris", "Oslo", "St. Louis"]
    assert task.score(task.extract('"sgn".', s.train[0]), s.train[0].target)
    bad = _write(tmp_path / "empty_gold.jsonl", [{"input": "q", "target": '"".'}] * 3, {"answer_format": "free_text"})
    with pytest.raises(BenchError, match=r"empty_gold.jsonl line 1: target '\"\"\.' is empty once quotes"):
        custom_task(bad)


# ------------------------------------------------------------------------------------------ end to end


def test_a_never_seen_free_text_task_end_to_end(tmp_path):
    """Capitals, free text: greedy reads the regex in the stopped, budgeted continuation; fallback the last
    regex match in the reasoning; case ignored when scoring."""
    task = custom_task(_write(tmp_path / "capitals.jsonl", CAPITAL_ROWS, SIDECAR))
    test = list(task.load().test)  # 7 rows: Canada .. Cuba minus those of train/dev
    assert [e.input.split("of ")[1][:-1] for e in test] == ["Kenya", "Japan", "Egypt", "Chile", "Ghana", "Nepal", "Cuba"]
    reasoning = {
        "Kenya": "I recall the capital is Mombasa, but no: the capital is Nairobi.",  # fallback right
        "Japan": "Kyoto was the capital; now the capital is tokyo",  # lower case: right (case_sensitive false)
        "Egypt": "Hmm, the capital is Alexandria.",  # fallback wrong
        "Chile": "Not sure at all.",  # no match: fallback None
        "Ghana": "The capital is Accra.",
        "Nepal": "The capital is Kathmandu.",
        "Cuba": "The capital is Havana.",
    }
    answers = {
        "Kenya": "The capital is nairobi. Kenya's largest city too.",  # stop "." cuts after nairobi: right
        "Japan": '"Tokyo".',  # no "capital is": no greedy answer
        "Egypt": "the capital is Cairo",
        "Chile": "THE CAPITAL IS SANTIAGO",  # the regex says (?i): read, and scored ignoring case
        "Ghana": "Well, thinking it over once more, the capital is Accra",  # past the 6-token budget: cut, none
        "Nepal": "The capital is Kathmandu, surely",
        "Cuba": "The capital is Havana",
    }
    extractor = task.extractor(test[0])

    def reply(rendered, params, index):
        country = rendered.split("capital of ")[1].split("?")[0]
        return answers[country] if rendered.endswith(extractor) else reasoning[country]

    gen = ScriptedGenerator(reply)
    res = evaluate(task, test, "Think step by step.", gen, max_new_tokens=64)
    by_country = {r["input"].split("of ")[1][:-1]: r for r in res.examples}
    assert {c: r["greedy"] for c, r in by_country.items()} == {
        "Kenya": "nairobi", "Japan": None, "Egypt": "Cairo", "Chile": "SANTIAGO", "Ghana": None,
        "Nepal": "Kathmandu", "Cuba": "Havana",
    }
    assert {c: r["fallback"] for c, r in by_country.items()} == {
        "Kenya": "Nairobi", "Japan": "tokyo", "Egypt": "Alexandria", "Chile": None, "Ghana": "Accra",
        "Nepal": "Kathmandu", "Cuba": "Havana",
    }
    assert [c for c, r in by_country.items() if r["greedy_correct"]] == ["Kenya", "Egypt", "Chile", "Nepal", "Cuba"]
    assert [c for c, r in by_country.items() if r["fallback_correct"]] == ["Kenya", "Japan", "Ghana", "Nepal", "Cuba"]
    assert res.readings["greedy"].accuracy == pytest.approx(5 / 7) and res.readings["greedy"].invalid == pytest.approx(2 / 7)
    assert res.readings["fallback"].accuracy == pytest.approx(5 / 7) and res.readings["fallback"].invalid == pytest.approx(1 / 7)
    assert res.primary == "greedy" and "options" not in res.readings  # free text: no closed set to score
    assert by_country["Kenya"]["answer_text"] == "The capital is nairobi"  # cut at the declared stop string
    # one batched call for the reasoning, one for the answers with the task's budget and stop string
    (_, reasoning_params), (answer_prompts, answer_params) = gen.calls
    assert reasoning_params.max_tokens == 64 and reasoning_params.stop == ()
    assert answer_params.max_tokens == 6 and answer_params.stop == (".",) and len(answer_prompts) == 7


def test_free_text_fallback_without_a_regex_end_to_end(tmp_path):
    rows = [{"input": f"Name the colour #{i}.", "target": t} for i, t in enumerate(["red", "Sky Blue", "green", "teal"])]
    task = custom_task(_write(tmp_path / "colours.jsonl", rows, {"splits": {"train": 1, "dev": 1}}))
    assert task.answer_format is FT and task.answer_stop == ("\n",)
    test = list(task.load().test)  # colours 2 and 3
    reasoning = {"2": "Grass is green, so the answer is: Green.", "3": "The answer is teal or maybe cyan. Hmm."}
    answers = {"2": '"green".', "3": "'Cyan'."}

    def reply(rendered, params, index):
        n = rendered.split("#")[1][0]
        return answers[n] if "final answer is:" in rendered else reasoning[n]

    res = evaluate(task, test, None, ScriptedGenerator(reply), max_new_tokens=32)
    assert [(r["greedy"], r["fallback"]) for r in res.examples] == [("green", "Green"), ("Cyan", "teal or maybe cyan")]
    assert [(r["greedy_correct"], r["fallback_correct"]) for r in res.examples] == [(True, True), (False, False)]


def test_builtin_free_text_tasks_read_the_same_greedy_answers():
    """word_sorting and dyck_languages (free text) keep their greedy readings on the golden cases."""
    ex = Example(id="t/0", input="q", target="x")
    sorting, dyck = get_task("bbh:word_sorting"), get_task("bbh:dyck_languages")
    assert sorting.extract(" apple banana cherry.\nmore text", ex) == "apple banana cherry"
    assert dyck.extract("$] ] >$", ex) == "] ] >" and dyck.score("]]  >", "] ] >")
    assert sorting.extract_fallback("So the answer is: apple banana.", ex) == "apple banana"
