"""Environment variables, parsed where they are read: a value the harness cannot use is one `BenchError` that
names the variable and the fix, never a traceback and never a silent default.

Every reader takes `environ` (default: `os.environ`), so tests drive them as pure functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from harness.core.types import BenchError

FLAG_ON = ("1", "true", "yes", "on")
FLAG_OFF = ("0", "false", "no", "off")


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def env_text(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value with surrounding whitespace removed; None when unset or blank."""
    value = _env(environ).get(name, "").strip()
    return value or None


def env_flag(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); unset or blank: `default`."""
    value = env_text(name, environ)
    if value is None:
        return default
    if value.lower() in FLAG_ON:
        return True
    if value.lower() in FLAG_OFF:
        return False
    raise BenchError(f"{name}={value!r} is neither on nor off: set it to 1 or 0 (or unset it)")


def env_number(name: str, default: float, environ: Mapping[str, str] | None = None, *, minimum: float = 0.0,
               what: str = "a number (0 or more)", example: str = "1") -> float:
    """A finite number of at least `minimum`; unset or blank: `default`."""
    value = env_text(name, environ)
    if value is None:
        return default
    try:
        number = float(value) if value.isascii() else math.nan  # float() also reads '١٥' and '1_5'
    except ValueError:
        number = math.nan
    if "_" in value or not math.isfinite(number) or number < minimum:
        raise BenchError(f"{name}={value!r} is not {what}: set it to e.g. {example} (or unset it)")
    return number


def env_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A key sent in an HTTP header: no whitespace or control characters inside (a pasted line break would
    fail deep inside the HTTP client); None when unset or blank."""
    value = env_text(name, environ)
    if value is not None and (not value.isprintable() or any(c.isspace() for c in value)):
        raise BenchError(f"{name} holds whitespace or control characters: set it to the key alone, on one line")
    return value


def env_path(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """A folder named by the variable (`~` expanded); None when unset or blank."""
    value = env_text(name, environ)
    return None if value is None else Path(value).expanduser()
