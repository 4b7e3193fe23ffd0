"""The optimizer registry's members, imported explicitly (no import-time self-registration elsewhere).

Each method module registers a factory `make(preset: str = "cpu", **overrides) -> Optimizer` in
`harness.optimize.OPTIMIZERS`; its config dataclass (frozen, keyword-only, published defaults) lives next
to its code with `paper`, `cpu` and `smoke` presets.
"""

from __future__ import annotations

import importlib

from harness.optimize import OPTIMIZERS
from harness.types import Optimizer

# module that defines each method; imported on first use so `bench --help` stays fast
METHOD_MODULES = {
    "zs-cot": "baselines.fixed",
    "greater": "harness.greater",
    "ape": "baselines.ape",
    "opro": "baselines.opro",
    "protegi": "baselines.protegi",
    "textgrad": "baselines.textgrad",
}


def load_methods() -> list[str]:
    """Import every method module that exists; return the registered names."""
    for module in METHOD_MODULES.values():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:  # a real missing dependency inside an existing module
                raise
    return OPTIMIZERS.names()


def make_optimizer(method: str, preset: str = "cpu", **overrides: object) -> Optimizer:
    load_methods()
    return OPTIMIZERS.get(method)(preset=preset, **overrides)
