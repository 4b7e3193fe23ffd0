"""Property-based tests of custom tasks: any rows and any sidecar make a task whose splits load, or one `BenchError`
line; never another exception. A task that is made reads its own golds back as correct answers, and loads the
same splits twice. The data files are written with and without ASCII escapes (JSON strings may hold U+2028)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_properties import JSON, TEXT, one_line

from harness.core.types import BenchError

TARGETS = st.one_of(st.sampled_from(["Yes", "No", "yes", "(A)", "B", "(C)", "True", "False", "valid", "invalid", "12",
                                     "-3", "1,000", "Lima", '"Lima".', "", " ", "."]), TEXT, st.integers(), st.floats())
INPUTS = st.one_of(st.sampled_from(["Is 2 even?", "Which?\nOptions:\n(A) x\n(B) y", "q"]), TEXT, st.integers())
ROW = st.fixed_dictionaries(
    {"input": INPUTS, "target": TARGETS},
    optional={"id": st.one_of(st.integers(0, 3), TEXT), "split": st.sampled_from(["train", "dev", "test", "valid"])},
)
ROWS = st.lists(st.one_of(ROW, ROW, ROW, JSON), max_size=10)
SIDECAR = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={
        "name": st.one_of(TEXT, JSON),
        "answer_format": st.one_of(st.sampled_from(["letter", "yes_no", "true_false", "valid_invalid", "integer",
                                                    "free_text"]), JSON),
        "options": st.one_of(st.lists(st.sampled_from(["A", "B", "C", "Yes", "No", "yes"]), max_size=4), JSON),
        "extractor": st.one_of(st.just("Therefore, the answer is $"), JSON),
        "answer_regex": st.one_of(st.sampled_from(["(?i)answer is (\\w+)", "\\d+", "(", "a{4294967296}"]), JSON),
        "case_sensitive": st.one_of(st.booleans(), JSON),
        "answer_max_tokens": st.one_of(st.integers(-2, 40), JSON),
        "stop": st.one_of(st.sampled_from(["\n", ".", [], ["\n", "."]]), JSON),
        "splits": st.one_of(st.fixed_dictionaries({}, optional={k: st.one_of(st.integers(-1, 6), st.floats(0, 1.5))
                                                                for k in ("train", "dev", "test", "tset")}), JSON),
        "notes": JSON,
    }),
    JSON,
)


@settings(max_examples=150)
@given(ROWS, SIDECAR, st.booleans())
@example([{"input": "q", "target": "a\u2028b"}] * 3, None, False)
@example([{"input": "q", "target": "Yes"}] * 3, {"options": {"Yes": 1}}, True)
@example([{"input": "q", "target": "Yes"}] * 3, {"answer_regex": "a{4294967296}"}, True)
def test_any_rows_and_sidecar_make_a_task_or_one_line(rows, sidecar, ascii_escapes):
    from tasks.custom import custom_task

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "qa.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=ascii_escapes) + "\n" for r in rows), encoding="utf-8")
        if sidecar is not None:
            (Path(tmp) / "qa.jsonl.task.json").write_text(json.dumps(sidecar, ensure_ascii=ascii_escapes), encoding="utf-8")
        try:
            task = custom_task(path)
        except BenchError as e:
            one_line(e)
            return
        splits = task.load()
        assert splits.train and splits.dev and splits.test
        assert task.load() == splits
        for e in (*splits.train, *splits.dev, *splits.test):
            assert isinstance(e.target, str) and e.target.encode("utf-8")
            if task.answer_format.closed:
                assert e.target in (e.meta.get("options") or task.options)
            assert task.score(e.target, e.target), (task.answer_format, e.target)


@settings(max_examples=100)
@given(st.one_of(TEXT, st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
                 st.integers(1, 3000).map(lambda n: "[" * n + "]" * n), st.just("9" * 5000)))
@example("[" * 100_000 + "]" * 100_000)
@example('{"answer_max_tokens": ' + "9" * 5000 + "}")
def test_any_sidecar_file_is_read_or_one_line(text):
    from tasks.sidecar import read_sidecar

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "qa.jsonl"
        path.write_text('{"input": "q", "target": "Yes"}\n')
        (Path(tmp) / "qa.task.json").write_text(text, encoding="utf-8")
        try:
            data = read_sidecar(path)
        except BenchError as e:
            assert "qa.task.json" in one_line(e)
            return
        assert isinstance(data, dict)


@settings(max_examples=100)
@given(st.one_of(TEXT, st.integers(1, 3000).map(lambda n: "[" * n + "]" * n), st.just('{"input": ' + "9" * 5000 + "}")))
@example("[" * 100_000 + "]" * 100_000)
def test_any_data_line_is_read_or_one_line(line):
    from tasks.loader import read_file

    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("rows.jsonl", line + "\n"), ("rows.json", line)):
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            try:
                rows = read_file(path)
            except BenchError as e:
                assert name in one_line(e)
                continue
            assert all(isinstance(r, dict) for r in rows.items)
