"""Tasks: the splits of all 29 tasks, data sources, missing and malformed data, and custom tasks with their errors.
(Answer formats and names: test_tasks.py.)"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from harness.core.types import AnswerFormat, BenchError, Example
from tasks import custom_task, expand_tasks, get_task, loader
from tasks import formats as F

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
