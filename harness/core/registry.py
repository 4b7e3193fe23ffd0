"""Explicit registries: names map to factories; unknown names fail with "did you mean ...".

Nothing registers itself on import of this module; each registry's owner imports its members explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from harness.core.text import did_you_mean
from harness.core.types import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, fix: str = "") -> None:
        self.kind = kind  # "task", "model", "optimizer", ...
        self.fix = fix  # how to list the valid names, e.g. "run `bench tasks`"
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise BenchError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        hint = did_you_mean(name, self._items, n=3, cutoff=0.5)
        fix = f" ({self.fix})" if self.fix else ""
        return f"unknown {self.kind} {name!r}{hint}{fix}"

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)
