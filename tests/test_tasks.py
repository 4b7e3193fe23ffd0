"""Tasks: answer formats (reading, scoring, extractor texts), splits of all 29 tasks, custom tasks, errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest

from harness.core.types import AnswerFormat, BenchError, Example
from tasks import custom_task, expand_tasks, get_task, loader, task_names
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


def _data_dir() -> Path:
    env = os.environ.get("BENCH_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


DATA = _data_dir()
needs_data = pytest.mark.skipif(
    not (DATA / "bbh" / "navigate.json").is_file(), reason=f"no benchmark data at {DATA}"
)


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


# ------------------------------------------------------------------------------------------ splits


EXPECTED_SIZES = {f"bbh:{n}": (50, 100, 100) for n in (t.removeprefix("bbh:") for t in expand_tasks("bbh"))}
EXPECTED_SIZES |= {
    "bbh:penguins_in_a_table": (50, 48, 48),
    "bbh:snarks": (50, 64, 64),
    "bbh:causal_judgement": (50, 68, 69),
    "gsm8k": (100, 100, 1319),
    "folio": (100, 100, 204),
}
QUIRKS = {("bbh:movie_recommendation", 163), ("bbh:ruin_names", 99), ("bbh:ruin_names", 144)}


@needs_data
@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_split_sizes_and_golds(name):
    task = get_task(name)
    splits = task.load(DATA)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == EXPECTED_SIZES[name]
    everything = splits.train + splits.dev + splits.test
    ids = [e.id for e in everything]
    assert len(set(ids)) == len(ids)  # train, dev, test disjoint
    assert str(EXPECTED_SIZES[name][2]) in splits.rule
    if name.startswith("bbh:"):  # file order: rows 0.. in sequence
        assert [e.meta["row"] for e in everything] == list(range(len(everything)))
        assert splits.train[17].id == f"{name}/17"
    if task.answer_format.closed:
        seen: set[str] = set()
        for e in everything:
            seen.update(task.options_for(e))
            if (name, e.meta["row"]) not in QUIRKS:
                assert e.target in task.options_for(e), e.id
        assert seen == set(task.options)  # task-level options = union of the examples' options
    elif task.answer_format is AnswerFormat.INTEGER:
        assert all(F.normalise_number(e.target) == e.target for e in everything)


@needs_data
def test_quirky_golds_are_kept():
    movie = get_task("bbh:movie_recommendation").load(DATA)
    row163 = [e for e in movie.test if e.meta["row"] == 163][0]
    assert row163.target == "Monsters, Inc"
    ruin = get_task("bbh:ruin_names").load(DATA)
    assert {e.target for e in ruin.train + ruin.dev + ruin.test if e.meta["row"] in (99, 144)} == {
        "dearth, wind, & fire",
        "rita, sue and bob poo",
    }


@needs_data
def test_gsm8k_and_folio_examples():
    g = get_task("gsm8k").load(DATA)
    assert g.test[0].id == "gsm8k/test/0" and g.test[0].target == "18"
    assert g.train[0].id == "gsm8k/train/0" and g.dev[0].meta["row"] == 100
    f = get_task("folio").load(DATA)
    first = f.test[0]
    assert first.input.endswith("Conclusion: Bonnie performs in school talent shows often.\n" + (
        "Is the conclusion True, False, or Uncertain?\nOptions:\n(A) True\n(B) False\n(C) Uncertain"))
    assert {e.target for e in f.train + f.dev + f.test} == set(ABC)  # "Unknown" of v0.0 train mapped to C


@needs_data
def test_seed_reshuffles_deterministically():
    task = get_task("bbh:navigate")
    base = task.load(DATA)
    assert [e.id for e in task.load(DATA).train] == [e.id for e in base.train]
    a, b = task.load(DATA, seed=1), task.load(DATA, seed=1)
    assert [e.id for e in a.test] == [e.id for e in b.test]
    assert [e.id for e in a.train] != [e.id for e in base.train]
    assert "random.Random(1)" in a.rule and "file order" in base.rule
    parts = [{e.id for e in s} for s in (a.train, a.dev, a.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) == 250
    g0, g1 = get_task("gsm8k").load(DATA), get_task("gsm8k").load(DATA, seed=5)
    assert [e.id for e in g0.test] == [e.id for e in g1.test]  # the test file stays fixed
    assert [e.id for e in g0.train] != [e.id for e in g1.train]
    with pytest.raises(BenchError, match="seed"):
        task.load(DATA, seed="1")


@needs_data
def test_env_var_is_a_data_source(monkeypatch):
    monkeypatch.setenv("BENCH_DATA_DIR", str(DATA))
    assert len(get_task("bbh:snarks").load().test) == 64


# ------------------------------------------------------------------------------------------ missing data


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no default data folder (data/, ../shared/data) in sight
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # `datasets` itself decides; no network probe
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    loader._hub_rows_cached.cache_clear()
    yield
    loader._hub_rows_cached.cache_clear()


def test_missing_data_names_both_fixes(no_hub):
    with pytest.raises(BenchError) as info:
        get_task("bbh:navigate").load()
    msg = str(info.value)
    fixes = ("--data-dir", "BENCH_DATA_DIR", "bbh/navigate.json", "lukaemon/bbh", "hub failed")
    for part in ("bbh:navigate", *fixes):
        assert part in msg


def test_missing_file_in_data_dir(no_hub, tmp_path):
    with pytest.raises(BenchError, match=r"gsm8k/train.jsonl does not exist.*--data-dir.*openai/gsm8k"):
        get_task("gsm8k").load(tmp_path)


def test_hub_path_reads_rows(monkeypatch, no_hub):
    calls = []

    def load_dataset(repo, config=None, split=None):
        calls.append((repo, config, split))
        question = "Q?\nOptions:\n- Yes\n- No"
        return [{"input": question, "target": "Yes" if i % 2 else "No"} for i in range(250)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    splits = get_task("bbh:navigate").load()
    assert calls == [("lukaemon/bbh", "navigate", "test")]
    assert splits.test[0].id == "bbh:navigate/150" and splits.test[0].target == "No"
    assert "hub lukaemon/bbh" in splits.rule


def test_malformed_data_files(no_hub, tmp_path):
    (tmp_path / "bbh").mkdir()
    (tmp_path / "bbh" / "navigate.json").write_text('{"examples": [')
    with pytest.raises(BenchError, match=r"malformed data file .*navigate.json"):
        get_task("bbh:navigate").load(tmp_path)
    (tmp_path / "gsm8k").mkdir()
    good = json.dumps({"question": "q", "answer": "a\n#### 3"})
    (tmp_path / "gsm8k" / "train.jsonl").write_text(f"{good}\n{{oops\n")
    (tmp_path / "gsm8k" / "test.jsonl").write_text(f"{good}\n")
    with pytest.raises(BenchError, match=r"train.jsonl line 2"):
        get_task("gsm8k").load(tmp_path)
    (tmp_path / "gsm8k" / "train.jsonl").write_text(f"{good}\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(BenchError, match=r"train.jsonl line 2: field 'answer'"):
        get_task("gsm8k").load(tmp_path)
    (tmp_path / "gsm8k" / "train.jsonl").write_text(f"{good}\n")
    with pytest.raises(BenchError, match=r"dev split is empty"):
        get_task("gsm8k").load(tmp_path)


# ------------------------------------------------------------------------------------------ custom tasks


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_custom_task_letters_default_split(tmp_path):
    question = "Q\nOptions:\n(A) x\n(B) y\n(C) z"
    rows = [{"input": question, "target": "(B)" if i % 2 else "(A)"} for i in range(10)]
    task = custom_task(_write(tmp_path / "quiz.jsonl", rows))
    assert task.name == "custom:quiz" and task.answer_format is AnswerFormat.LETTER and task.options == ABC
    splits = task.load()
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (2, 2, 6)
    assert splits.train[0].id == "custom:quiz/0" and splits.test[0].meta["row"] == 4
    assert splits.train[1].target == "B"
    assert task.extract("(C)", splits.test[0]) == "C"
    assert "20%" in splits.rule
    via_name = get_task(f"custom:{tmp_path / 'quiz.jsonl'}")
    assert [e.id for e in via_name.load().test] == [e.id for e in splits.test]


def test_custom_task_split_field_and_sidecar(tmp_path):
    rows = [{"id": f"r{i}", "input": f"{i}+1?", "target": str(i + 1), "split": s}
            for i, s in enumerate(["train", "dev", "test", "test"])]
    path = _write(tmp_path / "sums.jsonl", rows)
    (tmp_path / "sums.jsonl.task.json").write_text(
        json.dumps({"name": "adder", "answer_format": "integer", "extractor": "So the sum is $"})
    )
    task = custom_task(path)
    assert task.name == "custom:adder" and task.answer_format is AnswerFormat.INTEGER
    assert task.extractor(ex()) == "So the sum is $"
    splits = task.load(seed=3)  # explicit split fields: the seed changes nothing
    assert [e.id for e in splits.test] == ["custom:adder/r2", "custom:adder/r3"]
    assert task.score(task.extract("4$", splits.test[1]), splits.test[1].target)
    assert custom_task(path, answer_format="free_text", name="raw").answer_format is AnswerFormat.FREE_TEXT
    as_enum = custom_task(path, answer_format=AnswerFormat.FREE_TEXT, name="custom:raw")
    assert as_enum.answer_format is AnswerFormat.FREE_TEXT and as_enum.name == "custom:raw"


def test_custom_task_lowercase_yes_no(tmp_path):
    rows = [{"input": f"q{i}", "target": "yes" if i % 3 else "no"} for i in range(5)]
    task = custom_task(_write(tmp_path / "yn.jsonl", rows))
    assert task.answer_format is AnswerFormat.YES_NO and task.options == ("yes", "no")
    assert task.extract("Yes", ex()) == "yes"


def test_custom_task_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "target": "1"}\n{"input": "b", "target": "2"}\n{"input": "c", "target":\n')
    with pytest.raises(BenchError, match=r"bad.jsonl line 3"):
        custom_task(bad)
    missing = tmp_path / "missing_field.jsonl"
    missing.write_text('{"input": "a", "target": "1"}\n\n{"input": "b"}\n')
    with pytest.raises(BenchError, match=r"missing_field.jsonl line 3: field 'target'"):
        custom_task(missing)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(BenchError, match=r"empty.jsonl is empty"):
        custom_task(empty)
    rows = [{"input": "q", "target": "Maybe"}] * 3
    with pytest.raises(BenchError, match=r"line 1: target 'Maybe' is not one of"):
        custom_task(_write(tmp_path / "yn.jsonl", rows), answer_format="yes_no")
    with pytest.raises(BenchError, match=r"unknown answer format 'letters'"):
        ok = _write(tmp_path / "ok.jsonl", [{"input": "q", "target": "A"}] * 3)
        custom_task(ok, answer_format="letters")
    with pytest.raises(BenchError, match="does not exist"):
        get_task(f"custom:{tmp_path / 'nope.jsonl'}")
