"""Custom tasks: a user's JSONL file becomes a Task without writing Python.

File: one JSON object per line, {"input": "...", "target": "..."}, optionally "id" (unique) and "split"
("train", "dev" or "test"). Blank lines are skipped.

Declared fields (all optional), from the arguments of `custom_task` (the CLI passes its flags here) or else
from a sidecar JSON file next to the data, `<file>.task.json` (e.g. `qa.jsonl.task.json`, or `qa.task.json`):
  {"name": "qa", "answer_format": "letter", "options": ["A", "B", "C"], "extractor": "...",
   "description": "...", "answer_regex": "...", "case_sensitive": false, "answer_max_tokens": 16,
   "stop": ["\\n"], "splits": {"train": 20, "dev": 20}}
- answer_format: one of letter, yes_no, true_false, valid_invalid, integer, free_text; when absent it is
  inferred from the golds (all "(X)"/"X" letters -> letter; all yes/no -> yes_no; ...; all integers ->
  integer; else free_text);
- options: the closed answer set in gold spelling. Default for letters: the letters the golds and the
  inputs' "Options:\\n(A) ..." lines use (an input listing options gets them as its own per-example set);
  for words the canonical set, lower-cased when every gold is lower-case;
- extractor: the text appended after the reasoning (default: the format's extractor of greater.md);
- answer_regex: where the answer is: the greedy reading takes the first match in the continuation after the
  extractor, the fallback reading the last match in the reasoning; the answer is the regex's group 1 when it
  has a group, else the whole match (read by the format's reader: a closed format still needs an option).
  Applied as written (case-sensitive unless it says "(?i)");
- case_sensitive: free text only: score predictions against golds with case kept (default false: both are
  lower-cased; closed sets are always matched case-insensitively);
- answer_max_tokens: the greedy reading's token budget (default: 8 for closed sets, 16 integers, 96 free text);
- stop: a stop string (or a list of them) ending the greedy continuation (default "\\n"; [] for none);
- splits: row counts {"train": 20, "dev": 20} (the rest is test) or fractions {"train": 0.1, "dev": 0.1};
  a split left out is 20% (train, dev) or the remaining rows (test); a declared test size leaves any further
  rows out. Not allowed together with "split" fields in the data.
Free-text golds are cleaned like free-text answers (`formats.clean_free_text`: surrounding quotes and
trailing periods removed). The task is named "custom:<name>", default "custom:<file stem>". Golds outside
the options are an error that names the fix.

Splits: when every line has a "split" field those are used (the seed is then ignored); otherwise the rows
are cut in file order (or shuffled with random.Random(seed) for an integer seed): by the declared `splits`,
else the first 20% train, the next 20% dev, the remaining 60% test, each part at least one row (20% rounded
down; 3 rows minimum).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from harness.core.hashing import canonical_json
from harness.core.types import AnswerFormat, BenchError, Example, Splits, Task
from tasks import formats
from tasks.base import make_task
from tasks.loader import Rows, make_splits, order_words, read_file, shuffled
from tasks.sidecar import (
    SIDECAR_SUFFIX,
    SPLIT_NAMES,
    SplitSizes,
    check_bool,
    check_max_tokens,
    check_regex,
    check_splits,
    check_stop,
    parse_answer_format,
    read_sidecar,
    sidecar_path,
    utf8,
)

PREFIX = "custom:"
ROW_SHAPE = '{"input": ..., "target": ...}'


# ------------------------------------------------------------------------------------------ rows


def _rows(path: Path) -> Rows:
    rows = read_file(path, jsonl=True)
    if not rows.items:
        raise BenchError(f"custom task file {path} is empty: write one {ROW_SHAPE} per line")
    for i, item in enumerate(rows.items):
        for key in ("input", "target"):
            if not isinstance(item.get(key), (str, int, float)) or isinstance(item.get(key), bool):
                raise BenchError(f"malformed line in {rows.where(i)}: field {key!r} missing or not a string")
            if not utf8(str(item[key])):
                raise BenchError(f"malformed line in {rows.where(i)}: field {key!r} holds a lone surrogate escape "
                                 "(such as \\ud800), which is no character: write the text as UTF-8")
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


def _fix_hint(fmt: AnswerFormat, rows: Rows, options: tuple[str, ...], sidecar: str, from_input: bool) -> str:
    """How to make the golds fit: the options to declare, or the answer format the golds suggest."""
    golds = [str(r["target"]).strip() for r in rows.items]
    suggested = formats.infer_format(golds)
    other = suggested if suggested is not fmt else AnswerFormat.FREE_TEXT
    use = f'use "answer_format": "{other.value}"'
    if fmt is AnswerFormat.LETTER:
        if from_input:
            return f"fix the gold or this line's 'Options:' list, or {use}"
        letters = {formats.normalise_gold(fmt, g) for g in golds}
        if not all(len(g) == 1 and g.isupper() for g in letters):
            return f"fix: {use} in {sidecar}"
        wanted = sorted(set(options) | letters)
    elif fmt is AnswerFormat.INTEGER:
        return f"fix: {use} in {sidecar}"
    else:
        wanted = list(options) + [g for g in dict.fromkeys(golds) if g.lower() not in {o.lower() for o in options}]
    return f"fix: declare \"options\": {json.dumps(wanted)} in {sidecar} or {use}"


def _examples(path: Path, name: str, fmt: AnswerFormat, options: tuple[str, ...], origin: str = "") -> list[Example]:
    """The rows of `path` as Examples; `origin` says where the answer format came from (for error messages)."""
    rows = _rows(path)
    out: list[Example] = []
    seen_ids: dict[str, int] = {}
    side = sidecar_path(path)
    sidecar = str(side) if side is not None else f"a sidecar {path.name}{SIDECAR_SUFFIX}"
    declared = f" (answer_format {fmt.value} {origin or 'inferred from the golds'})"
    for i, item in enumerate(rows.items):
        question = str(item["input"])
        meta: dict[str, Any] = {"row": i}
        if rows.lines is not None:
            meta["line"] = rows.lines[i]
        if "split" in item:
            meta["split"] = item["split"]
        allowed = options
        from_input = False
        if fmt is AnswerFormat.LETTER:
            listed = formats.parse_letter_options(question)
            from_input = bool(listed)
            allowed = listed or options
            meta["options"] = allowed
        target = formats.normalise_gold(fmt, str(item["target"]), allowed)
        bad = f"malformed line in {rows.where(i)}"
        if fmt.closed and target not in allowed:
            why = " (the options this line's input lists)" if from_input else declared
            fix = _fix_hint(fmt, rows, allowed, sidecar, from_input)
            raise BenchError(f"{bad}: target {item['target']!r} is not one of {allowed}{why}; {fix}")
        if fmt is AnswerFormat.INTEGER and formats.normalise_number(target) is None:
            fix = _fix_hint(fmt, rows, allowed, sidecar, from_input)
            raise BenchError(f"{bad}: target {item['target']!r} is not an integer{declared}; {fix}")
        if fmt is AnswerFormat.FREE_TEXT:
            target = formats.clean_free_text(target)
            if not target:
                raise BenchError(f"{bad}: target {item['target']!r} is empty once quotes and periods are removed")
        ident = f"{name}/{item['id']}" if "id" in item else f"{name}/{i}"
        if ident in seen_ids:
            raise BenchError(f"{bad}: id {item.get('id')!r} repeats row {seen_ids[ident]}")
        seen_ids[ident] = i
        out.append(Example(id=ident, input=question, target=target, meta=meta))
    return out


# ------------------------------------------------------------------------------------------ the task


def custom_task(
    path: str | os.PathLike[str],
    name: str | None = None,
    answer_format: AnswerFormat | str | None = None,
    options: Sequence[str] | None = None,
    extractor: str | None = None,
    description: str | None = None,
    *,
    answer_regex: str | None = None,
    case_sensitive: bool | None = None,
    answer_max_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    splits: dict[str, int | float] | None = None,
) -> Task:
    """A Task from a JSONL file; arguments left None come from the sidecar `<file>.task.json`, then defaults.

    The file is read and checked now, so a malformed line fails before any model is loaded.
    """
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        found = sorted(x.name for x in p.glob("*.jsonl"))
        hint = f"; it holds {', '.join(found[:3])}: e.g. custom:{p / found[0]}" if found else ""
        raise BenchError(f"custom task file {path} is a folder: name a .jsonl file, one {ROW_SHAPE} per line{hint}")
    if not p.is_file():
        raise BenchError(f"custom task file {path} does not exist")
    side = read_sidecar(p)
    side_file = sidecar_path(p)
    args = {"answer_format": answer_format, "options": options, "extractor": extractor,
            "answer_regex": answer_regex, "case_sensitive": case_sensitive,
            "answer_max_tokens": answer_max_tokens, "stop": stop, "splits": splits}

    def declared(key: str) -> tuple[Any, str]:
        """The value of `key` (argument first, then sidecar) and where it came from, for messages."""
        if args[key] is not None:
            return args[key], f"custom task {p.name} (argument {key})"
        return side.get(key), f"task file {side_file}"

    rows = _rows(p)
    raw_format, format_from = declared("answer_format")
    golds = [str(r["target"]) for r in rows.items]
    fmt = parse_answer_format(raw_format) if raw_format is not None else formats.infer_format(golds)
    origin = ""
    if raw_format is not None:
        origin = "given as an argument" if answer_format is not None else f"declared in {side_file}"
    opts, where = declared("options")
    if opts is not None and (not isinstance(opts, (list, tuple)) or not all(isinstance(o, str) and utf8(o) for o in opts)):
        raise BenchError(f"{where}: options must be a list of strings, not {opts!r}")
    task_options = tuple(opts) if opts is not None and fmt.closed else ()
    if fmt.closed and not task_options:
        task_options = _default_options(fmt, rows)
    regex = check_regex(*declared("answer_regex"))
    value, where = declared("case_sensitive")
    sensitive = check_bool(value, "case_sensitive", where)
    if sensitive and fmt is not AnswerFormat.FREE_TEXT:
        raise BenchError(f"{where}: case_sensitive applies to free_text answers only "
                         f"({fmt.value} answers are always matched case-insensitively)")
    max_tokens = check_max_tokens(*declared("answer_max_tokens"))
    stops = check_stop(*declared("stop"))
    sizes_value, sizes_from = declared("splits")
    sizes = check_splits(sizes_value, sizes_from)
    for key in ("name", "description"):
        value = side.get(key)
        if value is not None and not (isinstance(value, str) and utf8(value)):
            raise BenchError(f"task file {side_file}: {key} must be a string, not {value!r}")
    stem = str(name if name is not None else side.get("name") or p.stem).removeprefix(PREFIX)
    full_name = PREFIX + stem
    load = partial(load_custom, str(p), full_name, fmt, task_options,
                   **({"splits": sizes, "splits_from": sizes_from} if sizes else {}),
                   **({"origin": origin} if origin else {}))
    load()  # validate now: every line, ids, split sizes, and that no split is empty
    text, where = declared("extractor")
    if text is not None and not (isinstance(text, str) and utf8(text)):
        raise BenchError(f"{where}: extractor must be a string, not {text!r}")
    return make_task(
        full_name,
        fmt,
        task_options,
        load,
        description=str(description or side.get("description") or f"custom task from {p.name}"),
        extractor=text,
        answer_max_tokens=max_tokens,
        answer_regex=regex,
        case_sensitive=bool(sensitive),
        answer_stop=stops if stops is not None else ("\n",),
        reading_key=canonical_json({"extractor": text, "answer_regex": regex, "case_sensitive": bool(sensitive),
                                    "answer_max_tokens": max_tokens, "stop": list(stops) if stops is not None else None,
                                    "format": fmt.value, "options": list(task_options)}, compact=False),
    )


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, dev, test) for n unsplit rows: 20% / 20% / rest, each at least 1."""
    if n < 3:
        raise BenchError(f"a custom task without 'split' fields needs at least 3 rows, not {n}")
    part = max(1, n // 5)
    return part, part, n - 2 * part


def declared_sizes(n: int, sizes: SplitSizes, where: str, fname: str) -> tuple[int, int, int]:
    """(train, dev, test) row counts of n rows from declared sizes (counts or fractions, rounded down, at least
    1); train and dev default to 20%, test to the rows left. Over-large sizes are a BenchError naming `where`."""
    given = dict(sizes)

    def count(split: str) -> int:
        size = given[split]
        return size if isinstance(size, int) else max(1, int(n * size))

    n_train = count("train") if "train" in given else max(1, n // 5)
    n_dev = count("dev") if "dev" in given else max(1, n // 5)
    if "test" in given:
        n_test = count("test")
        if n_train + n_dev + n_test > n:
            raise BenchError(f"{where}: splits ask for {n_train} train + {n_dev} dev + {n_test} test = "
                             f"{n_train + n_dev + n_test} rows, but {fname} has {n}")
    else:
        n_test = n - n_train - n_dev
        if n_test < 1:
            raise BenchError(f"{where}: splits leave no test rows: {n_train} train + {n_dev} dev of the {n} rows "
                             f"of {fname}")
    return n_train, n_dev, n_test


def load_custom(
    path: str,
    name: str,
    fmt: AnswerFormat,
    options: tuple[str, ...],
    data_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    *,
    splits: SplitSizes = (),
    splits_from: str = "",
    origin: str = "",
) -> Splits:
    """Splits of a custom task (`data_dir` is ignored: the task names its own file).

    `splits`: declared sizes (see `declared_sizes`), from `splits_from`; `origin`: where the answer format
    was declared (for error messages)."""
    examples = _examples(Path(path), name, fmt, options, origin)
    fname = Path(path).name
    if all("split" in e.meta for e in examples):
        if splits:
            raise BenchError(f"{splits_from}: declares splits, but every line of {fname} has a 'split' field: "
                             f"keep one or the other")
        parts = {s: [e for e in examples if e.meta["split"] == s] for s in SPLIT_NAMES}
        sizes = "/".join(str(len(parts[s])) for s in SPLIT_NAMES)
        rule = f"{name}: the 'split' field of each line of {fname} ({sizes} train/dev/test)"
        return make_splits(name, parts["train"], parts["dev"], parts["test"], rule)
    if any("split" in e.meta for e in examples):
        raise BenchError(f"{name}: some lines of {fname} have a 'split' field, some not: give all or none")
    pool = shuffled(examples, seed)
    if splits:
        n_train, n_dev, n_test = declared_sizes(len(pool), splits, splits_from, fname)
        left = len(pool) - n_train - n_dev - n_test
        unused = f", last {left} unused" if left else ""
        rule = (
            f"{name}: {len(pool)} rows of {fname} {order_words(seed)}; first {n_train} train, next {n_dev} dev, "
            f"next {n_test} test{unused} (declared splits {dict(splits)})"
        )
    else:
        n_train, n_dev, n_test = split_sizes(len(pool))
        rule = (
            f"{name}: {len(pool)} rows of {fname} {order_words(seed)}; first {n_train} train (20%), "
            f"next {n_dev} dev (20%), remaining {n_test} test"
        )
    end = n_train + n_dev + n_test
    return make_splits(name, pool[:n_train], pool[n_train : n_train + n_dev], pool[n_train + n_dev : end], rule)
