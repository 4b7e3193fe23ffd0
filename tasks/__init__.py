"""The benchmark tasks: 27 BIG-Bench Hard tasks ("bbh:<name>"), "gsm8k", "folio", and custom JSONL tasks.

Public API:
    get_task(name) -> Task            "bbh:navigate", "gsm8k", "folio" or "custom:<path.jsonl>"
    task_names() -> list[str]         the 29 built-in names
    expand_tasks("bbh21,gsm8k") -> list[str]   groups "bbh" (27) and "bbh21" (the paper's 21), dedup in order
    custom_task(path, name=None, answer_format=None, options=None, extractor=None) -> Task
Importing this package reads no file; a task's rows are read by `task.load(data_dir=None, seed=None)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache, partial

from harness.core.registry import Registry
from harness.core.text import did_you_mean
from harness.core.types import BenchError, Task
from tasks import bbh, folio, gsm8k
from tasks.custom import PREFIX as CUSTOM_PREFIX
from tasks.custom import custom_task

__all__ = ["GROUPS", "custom_task", "expand_tasks", "get_task", "task_names"]

REGISTRY: Registry[Callable[[], Task]] = Registry("task", fix="run `bench tasks` to list them")
for _stem in bbh.BBH_TASKS:
    REGISTRY.add(f"bbh:{_stem}", partial(bbh.bbh_task, _stem))
REGISTRY.add(gsm8k.NAME, gsm8k.gsm8k_task)
REGISTRY.add(folio.NAME, folio.folio_task)
del _stem

GROUPS: dict[str, tuple[str, ...]] = {
    "bbh": tuple(f"bbh:{t}" for t in bbh.BBH_TASKS),
    "bbh21": tuple(f"bbh:{t}" for t in bbh.BBH21),
}


def task_names() -> list[str]:
    """The 29 built-in task names: the 27 "bbh:<name>" tasks, then "gsm8k" and "folio"."""
    return REGISTRY.names()


@cache
def _builtin(name: str) -> Task:
    return REGISTRY.get(name)()


def get_task(name: str) -> Task:
    """A task by name; "custom:<path>" builds one from a JSONL file (see tasks.custom).

    Unknown names raise BenchError with a did-you-mean hint.
    """
    name = name.strip()
    if name.startswith(CUSTOM_PREFIX):
        path = name[len(CUSTOM_PREFIX) :]
        if not path:
            raise BenchError("custom task needs a file: custom:<path.jsonl>")
        return custom_task(path)
    if name in GROUPS:
        raise BenchError(f"{name!r} is a group of tasks, not one task: expand it with expand_tasks()")
    return _builtin(name)


def expand_tasks(spec: str | Iterable[str]) -> list[str]:
    """Task names from a comma list with groups: "bbh21,gsm8k" -> 22 names, duplicates dropped, order kept.

    Every name is checked (unknown names raise BenchError with a did-you-mean hint); "custom:<path>" entries
    pass through as written.
    """
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in str(s).split(",")]
    out: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if part in GROUPS:
            names: Iterable[str] = GROUPS[part]
        elif part.startswith(CUSTOM_PREFIX) or part in REGISTRY:
            names = (part,)
        else:
            raise BenchError(_unknown(part))
        out.extend(n for n in names if n not in out)
    if not out:
        groups = ", ".join(GROUPS)
        raise BenchError(f"no task given: name one or a group ({groups}); run `bench tasks` to list them")
    return out


def _unknown(name: str) -> str:
    group = did_you_mean(name.lower(), GROUPS, cutoff=0.75, what="the group ")
    return f"unknown task {name!r}{group} ({REGISTRY.fix})" if group else REGISTRY.unknown(name)
