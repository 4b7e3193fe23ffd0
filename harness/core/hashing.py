"""Canonical JSON and its sha256: the one home of the hashes the harness keys things by.

What each caller hashes is fixed by what it has already written (run ids in results/, response-cache keys on
disk, data fingerprints), so the choices that differ between callers are parameters here, not copies:
- run ids (`stable_hash`, `RunSpec.run_id`): non-ASCII escaped, `default=str`, a prefix of the digest;
- response-cache keys (`harness.backends.cache`): UTF-8 as is, NaN refused, the whole digest;
- a custom task's reading key (`tasks.custom`): JSON's default ", " and ": " separators.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any


def canonical_json(obj: Any, *, compact: bool = True, ascii: bool = True, allow_nan: bool = True,
                   default: Callable[[Any], Any] | None = None) -> str:
    """`obj` as JSON with sorted keys: compact separators (or JSON's default ", " and ": "), non-ASCII escaped
    (or kept), NaN allowed (or refused), and `default` for values JSON cannot express (None: refused)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":") if compact else None, ensure_ascii=ascii,
                      allow_nan=allow_nan, default=default)


def sha256_hex(text: str) -> str:
    """The sha256 hex digest of `text` in UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: Any, length: int = 12) -> str:
    """A short hash of a JSON-able object, stable across processes and Python versions."""
    return sha256_hex(canonical_json(obj, default=str))[:length]
