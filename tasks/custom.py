"""Custom tasks: a user's JSONL file becomes a Task without writing Python.

File: one JSON object per line, {"input": "...", "target": "..."}, optionally "id" (unique) and "split"
("train", "dev" or "test"). Blank lines are skipped.

Declared fields (all optional), from the arguments of `custom_task` (the CLI passes its flags here) or else
from a sidecar JSON file next to the data, `<file>.task.json` (e.g. `qa.jsonl.task.json`, or `qa.task.json`):
  {"name": "qa", "answer_format": "letter", "options": ["A", "B", "C"], "extractor": "...",
   "description": "..."}
- answer_format: one of letter, yes_no, true_false, valid_invalid, integer, free_text; when absent it is
  inferred from the golds (all "(X)"/"X" letters -> letter; all yes/no -> yes_no; ...; all integers ->
  integer; else free_text);
- options: the closed answer set in gold spelling. Default for letters: the letters the golds and the
  inputs' "Options:\\n(A) ..." lines use (an input listing options gets them as its own per-example set);
  for words the canonical set, lower-cased when every gold is lower-case;
- extractor: the text appended after the reasoning (default: the format's extractor of greater.md).
The task is named "custom:<name>", default "custom:<file stem>". Golds outside the options are an error.

Splits: when every line has a "split" field those are used (the seed is then ignored); otherwise the rows
are cut in file order (or shuffled with random.Random(seed) for an integer seed): the first 20% train, the
next 20% dev, the remaining 60% test, each part at least one row (20% rounded down; 3 rows minimum).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from harness.core.types import AnswerFormat, BenchError, Example, Splits, Task
from tasks import formats
from tasks.base import make_task
from tasks.loader import Rows, make_splits, order_words, read_file, shuffled

PREFIX = "custom:"
SIDECAR_SUFFIX = ".task.json"
SIDECAR_KEYS = ("name", "answer_format", "options", "extractor", "description")
SPLIT_NAMES = ("train", "dev", "test")
FORMAT_NAMES = ", ".join(f.value for f in AnswerFormat)


def sidecar_path(path: Path) -> Path | None:
    """`<file>.task.json` (or `<stem>.task.json`) next to the data file, if it exists."""
    for candidate in (path.with_name(path.name + SIDECAR_SUFFIX), path.with_name(path.stem + SIDECAR_SUFFIX)):
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if side is None:
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"malformed task file {side}: {exc}") from None
    if not isinstance(data, dict):
        raise BenchError(f"malformed task file {side}: expected a JSON object")
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        known = ", ".join(SIDECAR_KEYS)
        raise BenchError(f"task file {side}: unknown field(s) {', '.join(unknown)} (known: {known})")
    return data


def _format(value: Any) -> AnswerFormat:
    if isinstance(value, AnswerFormat):
        return value
    try:
        return AnswerFormat(str(value).strip().lower().replace("-", "_").replace("/", "_"))
    except ValueError:
        raise BenchError(f"unknown answer format {value!r}: use one of {FORMAT_NAMES}") from None


def _rows(path: Path) -> Rows:
    rows = read_file(path, jsonl=True)
    if not rows.items:
        line = '{"input": ..., "target": ...}'
        raise BenchError(f"custom task file {path} is empty: write one {line} per line")
    for i, item in enumerate(rows.items):
        for key in ("input", "target"):
            if not isinstance(item.get(key), (str, int, float)) or isinstance(item.get(key), bool):
                raise BenchError(f"malformed line in {rows.where(i)}: field {key!r} missing or not a string")
        if "split" in item and item["split"] not in SPLIT_NAMES:
            where = rows.where(i)
            raise BenchError(f"malformed line in {where}: split {item['split']!r} is not train, dev or test")
    return rows


def _default_options(fmt: AnswerFormat, rows: Rows) -> tuple[str, ...]:
    golds = [str(r["target"]).strip() for r in rows.items]
    if fmt is AnswerFormat.LETTER:
        seen = {formats.normalise_gold(fmt, g) for g in golds}
        for r in rows.items:
            seen.update(formats.parse_letter_options(str(r["input"])))
        return tuple(sorted(s for s in seen if len(s) == 1 and s.isupper()))
    words = formats.WORD_SETS[fmt]
    if golds and all(g == g.lower() for g in golds):
        return tuple(w.lower() for w in words)
    return words


def _examples(path: Path, name: str, fmt: AnswerFormat, options: tuple[str, ...]) -> list[Example]:
    rows = _rows(path)
    out: list[Example] = []
    seen_ids: dict[str, int] = {}
    for i, item in enumerate(rows.items):
        question = str(item["input"])
        meta: dict[str, Any] = {"row": i}
        if rows.lines is not None:
            meta["line"] = rows.lines[i]
        if "split" in item:
            meta["split"] = item["split"]
        allowed = options
        if fmt is AnswerFormat.LETTER:
            allowed = formats.parse_letter_options(question) or options
            meta["options"] = allowed
        target = formats.normalise_gold(fmt, str(item["target"]), allowed)
        bad = f"malformed line in {rows.where(i)}"
        if fmt.closed and target not in allowed:
            raise BenchError(f"{bad}: target {item['target']!r} is not one of {allowed}")
        if fmt is AnswerFormat.INTEGER and formats.normalise_number(target) is None:
            raise BenchError(f"{bad}: target {item['target']!r} is not an integer")
        ident = f"{name}/{item['id']}" if "id" in item else f"{name}/{i}"
        if ident in seen_ids:
            raise BenchError(f"{bad}: id {item.get('id')!r} repeats row {seen_ids[ident]}")
        seen_ids[ident] = i
        out.append(Example(id=ident, input=question, target=target, meta=meta))
    return out


def custom_task(
    path: str | os.PathLike[str],
    name: str | None = None,
    answer_format: AnswerFormat | str | None = None,
    options: Sequence[str] | None = None,
    extractor: str | None = None,
    description: str | None = None,
) -> Task:
    """A Task from a JSONL file; arguments left None come from the sidecar `<file>.task.json`, then defaults.

    The file is read and checked now, so a malformed line fails before any model is loaded.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise BenchError(f"custom task file {path} does not exist")
    side = read_sidecar(p)
    rows = _rows(p)
    raw_format = answer_format if answer_format is not None else side.get("answer_format")
    golds = [str(r["target"]) for r in rows.items]
    fmt = _format(raw_format) if raw_format is not None else formats.infer_format(golds)
    opts = options if options is not None else side.get("options")
    if opts is not None and (isinstance(opts, str) or not all(isinstance(o, str) for o in opts)):
        raise BenchError(f"custom task {p.name}: options must be a list of strings, not {opts!r}")
    task_options = tuple(opts) if opts is not None and fmt.closed else ()
    if fmt.closed and not task_options:
        task_options = _default_options(fmt, rows)
    stem = str(name if name is not None else side.get("name") or p.stem).removeprefix(PREFIX)
    full_name = PREFIX + stem
    load = partial(load_custom, str(p), full_name, fmt, task_options)
    load()  # validate now: every line, ids, and that no split is empty
    text = extractor if extractor is not None else side.get("extractor")
    if text is not None and not isinstance(text, str):
        raise BenchError(f"custom task {p.name}: extractor must be a string, not {text!r}")
    return make_task(
        full_name,
        fmt,
        task_options,
        load,
        description=str(description or side.get("description") or f"custom task from {p.name}"),
        extractor=text,
    )


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, dev, test) for n unsplit rows: 20% / 20% / rest, each at least 1."""
    if n < 3:
        raise BenchError(f"a custom task without 'split' fields needs at least 3 rows, not {n}")
    part = max(1, n // 5)
    return part, part, n - 2 * part


def load_custom(
    path: str,
    name: str,
    fmt: AnswerFormat,
    options: tuple[str, ...],
    data_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
) -> Splits:
    """Splits of a custom task (`data_dir` is ignored: the task names its own file)."""
    examples = _examples(Path(path), name, fmt, options)
    fname = Path(path).name
    if all("split" in e.meta for e in examples):
        parts = {s: [e for e in examples if e.meta["split"] == s] for s in SPLIT_NAMES}
        sizes = "/".join(str(len(parts[s])) for s in SPLIT_NAMES)
        rule = f"{name}: the 'split' field of each line of {fname} ({sizes} train/dev/test)"
        return make_splits(name, parts["train"], parts["dev"], parts["test"], rule)
    if any("split" in e.meta for e in examples):
        raise BenchError(f"{name}: some lines of {fname} have a 'split' field, some not: give all or none")
    pool = shuffled(examples, seed)
    n_train, n_dev, n_test = split_sizes(len(pool))
    rule = (
        f"{name}: {len(pool)} rows of {fname} {order_words(seed)}; first {n_train} train (20%), "
        f"next {n_dev} dev (20%), remaining {n_test} test"
    )
    return make_splits(name, pool[:n_train], pool[n_train : n_train + n_dev], pool[n_train + n_dev :], rule)
