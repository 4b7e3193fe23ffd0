"""The sidecar of a custom task (`<file>.task.json`): where it is, reading it, and checking each declared field.

Every checker takes the value as JSON gave it and `where` (the sidecar or argument it came from) and returns the
field's value or raises a one-line `BenchError` naming `where` and the fix (tests/test_properties.py drives them
with arbitrary JSON values). The fields' meaning: tasks/custom.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.core.text import did_you_mean
from harness.core.types import AnswerFormat, BenchError
from tasks.loader import json_error

SIDECAR_SUFFIX = ".task.json"
SIDECAR_KEYS = (
    "name",
    "answer_format",
    "options",
    "extractor",
    "description",
    "answer_regex",
    "case_sensitive",
    "answer_max_tokens",
    "stop",
    "splits",
)
SPLIT_NAMES = ("train", "dev", "test")
FORMAT_NAMES = ", ".join(f.value for f in AnswerFormat)

SplitSizes = tuple[tuple[str, int | float], ...]  # declared split sizes: (("train", 20), ("dev", 0.1))


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
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"malformed task file {side}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # a JSON syntax error, an integer of 4300+ digits, deep nesting
        raise BenchError(f"malformed task file {side}: {json_error(exc, at_line=True)}") from None
    if not isinstance(data, dict):
        raise BenchError(f"malformed task file {side}: expected a JSON object")
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        fields = "; ".join(f"{k!r}{did_you_mean(k, SIDECAR_KEYS, prefix=' (', suffix=')')}" for k in unknown)
        known = ", ".join(SIDECAR_KEYS)
        raise BenchError(f"task file {side}: unknown field(s) {fields} (known: {known})")
    return data


def parse_answer_format(value: Any) -> AnswerFormat:
    if isinstance(value, AnswerFormat):
        return value
    try:
        return AnswerFormat(str(value).strip().lower().replace("-", "_").replace("/", "_"))
    except ValueError:
        raise BenchError(f"unknown answer format {value!r}: use one of {FORMAT_NAMES}") from None


# ------------------------------------------------------------------------------------------ declared fields


def check_regex(value: Any, where: str) -> str | None:
    """`value` if it is a valid regular expression (or None), else a one-line BenchError naming `where`."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BenchError(f"{where}: answer_regex must be a non-empty string, not {value!r}")
    try:
        re.compile(value)
    except (re.error, OverflowError, RecursionError) as exc:  # OverflowError: a repeat count such as a{4294967296}
        reason = " ".join(str(exc).split())
        raise BenchError(f"{where}: answer_regex {value!r} is not a valid regular expression ({reason})") from None
    return value


def check_bool(value: Any, key: str, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise BenchError(f"{where}: {key} must be true or false, not {value!r}")


def check_max_tokens(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BenchError(f"{where}: answer_max_tokens must be an integer of at least 1, not {value!r}")
    return value


def check_stop(value: Any, where: str) -> tuple[str, ...] | None:
    """A stop string or a list of them ([] for none); empty strings are refused."""
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
        raise BenchError(f"{where}: stop must be a non-empty string or a list of them, not {value!r}")
    return tuple(stops)


def check_splits(value: Any, where: str) -> SplitSizes | None:
    """Declared split sizes, each a row count (int >= 1) or a fraction of the rows (0 < f < 1)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        example = '{"train": 20, "dev": 20}'
        raise BenchError(f"{where}: splits must be an object such as {example}, not {value!r}")
    out: list[tuple[str, int | float]] = []
    for key, size in value.items():
        if key not in SPLIT_NAMES:
            raise BenchError(f"{where}: unknown split {key!r} in splits{did_you_mean(str(key), SPLIT_NAMES, prefix=' (', suffix=')')}: "
                             f"use train, dev or test")
        count = isinstance(size, int) and not isinstance(size, bool) and size >= 1
        fraction = isinstance(size, float) and 0 < size < 1
        if not (count or fraction):
            raise BenchError(f"{where}: splits {key} must be a row count of at least 1 or a fraction between 0 "
                             f"and 1, not {size!r}")
        out.append((key, size))
    return tuple(sorted(out, key=lambda kv: SPLIT_NAMES.index(kv[0])))


def utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
