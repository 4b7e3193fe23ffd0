"""Method configs from presets plus overrides: one way for every optimizer (GReaTer and the baselines).

Overrides may come from a command line as strings; they are read as the field's current type. Unknown
presets or fields fail with a one-line fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from harness.core.text import did_you_mean
from harness.core.types import BenchError

C = TypeVar("C")


def configure(method: str, presets: Mapping[str, C], preset: str, overrides: Mapping[str, Any]) -> C:
    """A preset's config with some fields replaced; unknown presets or fields fail with a one-line fix.

    A run preset the method has no sizes for (`cpu-0.5b`) builds on the method's sizes under its `base`, with
    the preset's settings for this method (then `overrides`) over them."""
    if preset not in presets:
        from harness.core.spec import PRESETS as RUN_PRESETS

        run_preset = RUN_PRESETS.get(preset) if preset in RUN_PRESETS else None
        if run_preset is not None and run_preset.base in presets:
            return configure(method, presets, run_preset.base, {**run_preset.methods.get(method, {}), **overrides})
        hint = did_you_mean(preset, presets)
        raise BenchError(f"{method}: unknown preset {preset!r}{hint} (use one of {', '.join(presets)})")
    base = presets[preset]
    known = {f.name for f in dataclasses.fields(base)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BenchError(f"{method}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    defaults = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}  # type: ignore[arg-type]
    values = {k: _coerce(defaults[k], v) for k, v in overrides.items()}
    return dataclasses.replace(base, **values)  # type: ignore[type-var]


def _coerce(default: Any, value: Any) -> Any:
    """Overrides typed on a command line arrive as strings: read them as the field's current type."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    if value.lower() in ("none", "null"):
        return None
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int) or (default is None and value.lstrip("-").isdigit()):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple):
        return (value,)
    return value


