"""The optimizer registry: methods are found through the `greater_bench.methods` entry points.

Each method module defines a factory `make(preset: str = "cpu", **overrides) -> Optimizer` (its frozen config
with `paper`, `cpu` and `smoke` presets lives next to its code) and is named by one line in pyproject.toml:

    [project.entry-points."greater_bench.methods"]
    ape = "baselines.ape:make"

So the harness never imports `baselines` (or any other method package) by name, a method in another installed
package registers the same way, and a factory's module is imported only when the method is used (`bench
--help` stays fast). Unknown names fail with "did you mean ...".
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from harness.core.context import Optimizer
from harness.core.registry import Registry
from harness.core.spec import RunSpec
from harness.core.types import BenchError

GROUP = "greater_bench.methods"
Factory = Callable[..., Optimizer]


def method_entry_points() -> Registry[EntryPoint]:
    """Every registered method, by name, in the order the installed packages declare them."""
    reg: Registry[EntryPoint] = Registry("method", fix="run `bench methods` to list them")
    for ep in entry_points(group=GROUP):
        if ep.name not in reg:  # the same distribution seen twice on sys.path: the first wins, as for imports
            reg.add(ep.name, ep)
    if not reg.names():
        raise BenchError("no prompt optimization methods are registered: install the project (`pip install -e .`)")
    return reg


def load_methods() -> list[str]:
    """The registered method names (nothing is imported)."""
    return method_entry_points().names()


def check_method(name: str) -> None:
    """Fail with did-you-mean on an unknown method name (nothing is imported)."""
    method_entry_points().get(name)


def method_factory(name: str) -> Factory:
    ep = method_entry_points().get(name)
    try:
        factory = ep.load()
    except ImportError as e:
        raise BenchError(f"method {name!r} cannot be imported ({e}): reinstall the package that provides it") from None
    if not callable(factory):
        raise BenchError(f"method {name!r}: entry point {ep.value!r} is not a factory function")
    return factory


def make_optimizer(method: str, preset: str = "cpu", **overrides: object) -> Optimizer:
    """The method's optimizer from its preset plus overrides (unknown presets or settings fail in one line)."""
    return method_factory(method)(preset=preset, **overrides)


def spec_optimizer(spec: RunSpec) -> Optimizer:
    """The method of an optimize spec: its preset plus the spec's overrides (bad names fail in one line)."""
    return make_optimizer(spec.method, preset=spec.preset or "cpu", **dict(spec.overrides))


def describe_methods() -> list[tuple[str, str]]:
    """(name, one line) for every registered method: the first line of its factory's docstring."""
    rows = []
    for name in load_methods():
        doc = (method_factory(name).__doc__ or "").strip().splitlines()
        rows.append((name, doc[0] if doc else ""))
    return rows
