"""The one home of canonical JSON and its hashes keeps every caller's bytes: run ids, response-cache keys and a
custom task's reading key are what the earlier copies (json.dumps + sha256 in each module) gave."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.backends.cache import _digest
from harness.core.hashing import canonical_json, stable_hash

OBJ = {"task": "custom:qä", "b": [1, 2.5, None], "a": {"z": "€", "y": True}}


def test_run_id_hash_escapes_non_ascii_and_takes_a_prefix():
    assert stable_hash(OBJ, 10) == "ec9c605fcf"
    assert stable_hash(OBJ) == stable_hash(dict(reversed(list(OBJ.items()))))  # key order never matters
    assert stable_hash({"p": Path("x")}) == stable_hash({"p": "x"})  # default=str


def test_cache_key_hashes_utf8_as_is_and_refuses_nan():
    assert _digest(OBJ) == "92ad790fb6e3f7efff65f43b8a6f62f2640c5b21047cf42d934985bb806a1fb8"
    with pytest.raises(ValueError):
        _digest({"x": math.nan})


def test_reading_key_keeps_jsons_default_separators():
    assert canonical_json(OBJ, compact=False) == '{"a": {"y": true, "z": "\\u20ac"}, "b": [1, 2.5, null], "task": "custom:q\\u00e4"}'
