"""Where benchmark rows come from, and how they are cut into train/dev/test.

Data sources, in order:
1. the `data_dir` argument of `Task.load` (the CLI's --data-dir);
2. the environment variable BENCH_DATA_DIR;
   both hold the official layout: bbh/<task>.json, gsm8k/{train,test}.jsonl,
   folio/folio-{train,validation}.jsonl.
   When a data folder is given, only it is used: a missing file is an error, not a silent switch to the hub;
3. otherwise the Hugging Face hub through `datasets` (imported only then): lukaemon/bbh, openai/gsm8k (config
   "main"), yale-nlp/FOLIO (gated: accept its terms and log in first).
If no source works the user gets one BenchError naming both fixes.

Files are parsed once per process (functools.lru_cache keyed by path, size and mtime); nothing else is global.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.core.env import env_path
from harness.core.hub import require_hub
from harness.core.types import BenchError, Example, Splits

ENV_VAR = "BENCH_DATA_DIR"


@dataclass(frozen=True)
class Rows:
    """Raw rows of one data file (or hub split) and how to name a row in an error message."""

    items: tuple[dict[str, Any], ...]
    origin: str  # "/data/gsm8k/train.jsonl" or "hub openai/gsm8k (main, train)"
    lines: tuple[int, ...] | None = None  # 1-based line numbers for JSONL files

    def where(self, i: int) -> str:
        if self.lines is not None:
            return f"{self.origin} line {self.lines[i]}"
        return f"{self.origin} row {i}"

    def field(self, i: int, key: str, kind: type | tuple[type, ...] = str) -> Any:
        """Row i's `key`, or a BenchError naming the file and line/row when it is missing or mistyped."""
        value = self.items[i].get(key)
        if not isinstance(value, kind):
            raise BenchError(f"malformed data in {self.where(i)}: field {key!r} missing or not {_kind(kind)}")
        return value


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


# ------------------------------------------------------------------------------------------ sources


# Looked for, relative to the working directory, when neither --data-dir nor BENCH_DATA_DIR is given: a
# `data/` folder of one's own, or the `shared/data` folder beside the repository (this project's layout).
DEFAULT_DIRS = ("data", "../shared/data")
DATA_SUBDIRS = ("bbh", "gsm8k", "folio")


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The data folder: the argument, else $BENCH_DATA_DIR, else the first of DEFAULT_DIRS that holds bbh/,
    gsm8k/ or folio/, else None (use the hub)."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = env_path(ENV_VAR)
    if env is not None:
        return env
    for candidate in map(Path, DEFAULT_DIRS):
        if any((candidate / sub).is_dir() for sub in DATA_SUBDIRS):
            return candidate
    return None


def no_data_message(task: str, relpath: str, hub_repo: str, reason: str) -> str:
    return (
        f"no data for {task} ({reason}): pass --data-dir DIR / set {ENV_VAR} to a folder with {relpath}, "
        f"or (with no data folder set) allow hub access for `datasets` ({hub_repo})"
    )


def fetch(
    task: str,
    data_dir: str | os.PathLike[str] | None,
    relpath: str,
    hub: tuple[str, str | None, str],
) -> Rows:
    """The rows of `relpath` under the data folder, or of the hub split `hub` = (repo, config, split)."""
    root = data_root(data_dir)
    repo = hub[0]
    if root is not None:
        path = root / relpath
        if not path.is_file():
            raise BenchError(no_data_message(task, relpath, repo, f"{path} does not exist"))
        return read_file(path)
    require_hub(f"the data of {task} ({repo} on the hub)", f"pass --data-dir DIR or set {ENV_VAR} to a folder with {relpath}",
                datasets=True)
    try:
        return hub_rows(*hub)
    except BenchError:
        raise
    except Exception as exc:  # ImportError, offline mode, no network, gated repo, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        reason = f"no data folder set and the hub failed: {type(exc).__name__}: {first}"
        raise BenchError(no_data_message(task, relpath, repo, reason)) from None


@lru_cache(maxsize=64)
def _hub_rows_cached(repo: str, config: str | None, split: str) -> Rows:
    import datasets  # heavy and optional at run time: imported only when the hub is used

    if config:
        ds = datasets.load_dataset(repo, config, split=split)
    else:
        ds = datasets.load_dataset(repo, split=split)
    origin = f"hub {repo} ({config + ', ' if config else ''}{split})"
    return Rows(tuple(dict(r) for r in ds), origin)


def hub_rows(repo: str, config: str | None, split: str) -> Rows:
    return _hub_rows_cached(repo, config, split)


# ------------------------------------------------------------------------------------------ files


def read_file(path: Path, jsonl: bool | None = None) -> Rows:
    """Parse a .json file ({"examples": [...]} or a list of rows) or a JSONL file; cached per process.

    `jsonl` None decides by the suffix (".jsonl"); True/False forces one parser.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise BenchError(f"cannot read data file {path}: {exc.strerror or exc}") from None
    as_jsonl = path.suffix == ".jsonl" if jsonl is None else jsonl
    return _read_cached(str(path.resolve()), as_jsonl, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _read_cached(path: str, jsonl: bool, size: int, mtime_ns: int) -> Rows:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read data file {path}: {exc}") from None
    if jsonl:
        return _parse_jsonl(text, path)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BenchError(f"malformed data file {path}: {json_error(exc, at_line=True)}") from None
    items = data.get("examples") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        raise BenchError(f"malformed data file {path}: expected {{\"examples\": [{{...}}, ...]}}")
    return Rows(tuple(items), path)


def json_error(exc: Exception, at_line: bool = False) -> str:
    """Why `json.loads` refused a text, in a few words: a syntax error, an integer of more digits than Python
    converts (ValueError), or arrays nested deeper than the recursion limit (RecursionError)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}" if at_line else exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


def _parse_jsonl(text: str, path: str) -> Rows:
    items: list[dict[str, Any]] = []
    lines: list[int] = []
    # lines end at "\n" only: str.splitlines() would also cut at U+2028, U+0085, ..., which JSON strings may hold
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise BenchError(f"malformed data file {path} line {n}: {json_error(exc)}") from None
        if not isinstance(row, dict):
            raise BenchError(f"malformed data file {path} line {n}: expected a JSON object")
        items.append(row)
        lines.append(n)
    return Rows(tuple(items), path, tuple(lines))


# ------------------------------------------------------------------------------------------ splits


def check_seed(seed: Any) -> int | None:
    if seed is None or (isinstance(seed, int) and not isinstance(seed, bool)):
        return seed
    raise BenchError(f"split seed must be an integer or None, not {seed!r}")


def shuffled(examples: Sequence[Example], seed: int | None) -> list[Example]:
    """File order for seed None (the paper's protocol), else a `random.Random(seed)` shuffle."""
    out = list(examples)
    if check_seed(seed) is not None:
        random.Random(seed).shuffle(out)
    return out


def source_words(rows: Rows, relpath: str) -> str:
    """Where rows came from, machine-independent: "bbh/navigate.json", "hub lukaemon/bbh (navigate, test)"."""
    return rows.origin if rows.origin.startswith("hub ") else relpath


def order_words(seed: int | None) -> str:
    return "in file order" if seed is None else f"shuffled with random.Random({seed})"


def make_splits(
    task: str, train: Sequence[Example], dev: Sequence[Example], test: Sequence[Example], rule: str
) -> Splits:
    for name, part in (("train", train), ("dev", dev), ("test", test)):
        if not part:
            raise BenchError(f"{task}: the {name} split is empty ({rule})")
    return Splits(train=tuple(train), dev=tuple(dev), test=tuple(test), rule=rule)


def pool_and_test_splits(
    task: str, data_dir: str | os.PathLike[str] | None, seed: int | None, examples: Callable[[Rows, str], list[Example]],
    *, train: tuple[str, tuple[str, str | None, str]], test: tuple[str, tuple[str, str | None, str]], n_train: int,
    n_dev: int,
) -> Splits:
    """A dataset with a train file and a test file (GSM8K, FOLIO): the train file, in file order or shuffled by
    `seed`, gives the first `n_train` rows to train and the next `n_dev` to dev; the test file is the test split,
    in file order. `train` and `test` are (file under the data folder, hub (repo, config, split)); `examples`
    reads a file's rows, named by its hub split."""
    train_rows = fetch(task, data_dir, train[0], train[1])
    test_rows = fetch(task, data_dir, test[0], test[1])
    pool = shuffled(examples(train_rows, train[1][2]), seed)
    test_split = examples(test_rows, test[1][2])
    rule = (
        f"{task}: {len(pool)} rows of {source_words(train_rows, train[0])} {order_words(seed)}; "
        f"first {n_train} train, next {n_dev} dev; test = all {len(test_split)} rows of "
        f"{source_words(test_rows, test[0])} in file order"
    )
    return make_splits(task, pool[:n_train], pool[n_train : n_train + n_dev], test_split, rule)
