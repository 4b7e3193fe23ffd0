"""The cells of a grid: what every cell shares (`GridSettings`), one (method, task, model, seed) `Cell`, the
order cells run in, and `resolve_grid`, the one place a grid's options become its specs (a `Grid`). Below both
the grid (`harness.runner.grid`) and its progress display (`harness.runner.progress`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.core.spec import MAX_SEED, PRESETS, OptimizerEndpoint, Override, RunSpec
from harness.core.types import BenchError, Budget, PromptPosition
from harness.runner.cell import Optimizers
from harness.runner.data import RunData


@dataclass(frozen=True, kw_only=True)
class GridSettings:
    """What every cell of a grid shares. The spec of a cell equals the one `bench optimize` builds from
    the same options, so both commands find each other's finished run folders. Position and reasoning length
    default to the preset's (`harness.core.spec.PRESETS`, their one home)."""

    preset: str = "cpu"
    position: PromptPosition | None = None  # None: the preset's
    max_new_tokens: int | None = None  # None: the preset's
    limit: int | None = None  # evaluate the final prompt on the first N test rows only
    reading: str | None = None  # primary answer reading; None: options for closed answer sets
    dtype: str = "float32"
    budget_tokens: int | None = None  # common budget: task-model tokens (in + out)
    optimizer_model: str | None = None  # optimizer LLM of text-based methods; None: the task model
    backend: str = "hf"
    optimizer_backend: str | None = None  # None: the task model's; "openai" with base_url reaches a server
    base_url: str | None = None  # that server's URL (the API key comes from OPENAI_API_KEY)
    overrides: tuple[tuple[str, Override], ...] = ()  # method settings over the preset's (every method of the grid)
    length_penalty: float = 0.0  # selection score - L x prompt tokens / 100, for every method that selects

    def __post_init__(self) -> None:
        p = PRESETS.get(self.preset)  # did-you-mean on a typo, before anything runs
        object.__setattr__(self, "position", PromptPosition(self.position or p.position))
        object.__setattr__(self, "max_new_tokens", self.max_new_tokens or p.max_new_tokens)
        from harness.backends import resolve_backend

        object.__setattr__(self, "backend", resolve_backend(self.backend))  # the spec records the real one
        if self.optimizer_backend == "hf":  # the task model's own engine family
            object.__setattr__(self, "optimizer_backend", None)
        if self.optimizer_backend is not None or self.base_url:
            OptimizerEndpoint(model=self.optimizer_model or "", backend=self.optimizer_backend, base_url=self.base_url)
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise BenchError(f"--budget must be a positive number of task-model tokens (got {self.budget_tokens})")

    def endpoint(self, model: str) -> OptimizerEndpoint | None:
        """The optimizer LLM of a cell on `model`; None when it is the task model on the task model's backend."""
        if self.optimizer_backend is None and self.optimizer_model in (None, model):
            return None
        return OptimizerEndpoint(model=self.optimizer_model or model, backend=self.optimizer_backend, base_url=self.base_url)


@dataclass(frozen=True, kw_only=True)
class Cell:
    method: str
    task: str
    model: str
    seed: int

    def spec(self, settings: GridSettings, data: str) -> RunSpec:
        """The cell's spec; `data` is the fingerprint of its rows (`RunData.optimize_fingerprint`)."""
        s = settings
        return RunSpec(
            kind="optimize", task=self.task, model=self.model, data=data, backend=s.backend, dtype=s.dtype,
            method=self.method, preset=s.preset, position=s.position, max_new_tokens=s.max_new_tokens,
            limit=s.limit, seed=self.seed, primary_reading=s.reading,
            budget=Budget(task_tokens=s.budget_tokens) if s.budget_tokens else None,
            optimizer=s.endpoint(self.model), overrides=s.overrides, length_penalty=s.length_penalty,
        )

    @classmethod
    def of(cls, spec: RunSpec) -> Cell:
        """The cell an optimize spec runs."""
        return cls(method=spec.method, task=spec.task, model=spec.model, seed=spec.seed)

    def __str__(self) -> str:
        return f"{self.method} / {self.task} / {self.model} / seed {self.seed}"


def make_cells(methods: Sequence[str], tasks: Sequence[str], models: Sequence[str], seeds: Sequence[int]) -> list[Cell]:
    """All cells, model by model (each model loads once), then seed by seed (a complete first seed comes
    first), then task, then method."""
    return [Cell(method=me, task=t, model=mo, seed=s) for mo in models for s in seeds for t in tasks for me in methods]


@dataclass(frozen=True, kw_only=True)
class Grid:
    """A grid resolved once from its options (`resolve_grid`): every cell's spec in run order, the rows the specs
    were made from (`data`: loaded and hashed once per task) and the methods' optimizers (`optimizers`: each
    configured once). Everything after resolution (`run_grid`, the dry run, `bench optimize`) takes this; another
    process (a child per model, a Ray worker) is handed the specs alone and loads its own data once."""

    specs: tuple[RunSpec, ...]
    data: RunData = field(default_factory=RunData)
    optimizers: Optimizers = field(default_factory=Optimizers)

    def __post_init__(self) -> None:
        object.__setattr__(self, "specs", tuple(self.specs))

    @property
    def cells(self) -> list[Cell]:
        return [Cell.of(s) for s in self.specs]

    def subset(self, indices: Sequence[int]) -> Grid:
        """The specs `indices`, sharing this grid's data and optimizers."""
        return Grid(specs=tuple(self.specs[i] for i in indices), data=self.data, optimizers=self.optimizers)


def resolve_grid(
    methods: Sequence[str], tasks: Sequence[str] | str, models: Sequence[str], seeds: Sequence[int],
    settings: GridSettings | None = None, *, data: RunData | None = None,
) -> Grid:
    """A grid's options -> its `Grid`, with every input checked before any model loads: task names (groups
    expanded), method names, presets and overrides (each method configured once), and the data rows (loaded
    and hashed once per task). Cells come in `make_cells` order."""
    from tasks import expand_tasks

    settings = settings or GridSettings()
    if not methods or not models or not seeds:
        raise BenchError("a grid needs at least one method, one model and one seed")
    cells = make_cells(list(methods), expand_tasks(tasks), list(models), [int(s) for s in seeds])
    data = data or RunData()
    optimizers = Optimizers()
    for method in dict.fromkeys(c.method for c in cells):
        optimizers.build(method, settings.preset, settings.overrides)
    prints = {t: data.optimize_fingerprint(t, settings.limit) for t in dict.fromkeys(c.task for c in cells)}
    return Grid(specs=tuple(c.spec(settings, prints[c.task]) for c in cells), data=data, optimizers=optimizers)


MAX_SEEDS = 1000  # seeds in one list: a grid of more cells than this is a typo (0-100000000000), not a plan


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" or "0-2" -> [0, 1, 2]: non-negative integers in ASCII digits (not '²' or '٣', which int() reads),
    duplicates dropped, order kept, at most MAX_SEEDS seeds of at most MAX_SEED each."""
    out: dict[int, None] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        a, dash, b = (x.strip() for x in part.partition("-"))
        if not _digits(a) or (dash and not _digits(b)):
            raise BenchError(f"--seeds: bad seed list {text!r}: use non-negative integers in ASCII digits like 0,1,2 "
                             "or a range 0-2")
        lo, hi = int(a), int(b) if dash else int(a)
        if hi < lo:
            raise BenchError(f"--seeds: seed range {part!r} runs backwards: write it low to high, e.g. {hi}-{lo}")
        if hi - lo + 1 > MAX_SEEDS:  # checked before the range is expanded (no MemoryError)
            raise BenchError(f"--seeds: the range {part!r} holds {hi - lo + 1} seeds, more than {MAX_SEEDS}: "
                             "a grid runs a few (e.g. 0-2)")
        if hi > MAX_SEED:
            raise BenchError(f"--seeds: seed {hi} is too large: seeds go from 0 to {MAX_SEED}")
        out.update(dict.fromkeys(range(lo, hi + 1)))
        if len(out) > MAX_SEEDS:
            raise BenchError(f"--seeds: the list {text!r} holds more than {MAX_SEEDS} seeds: a grid runs a few (e.g. 0-2)")
    if not out:
        raise BenchError("--seeds: no seed given: use e.g. --seeds 0 or --seeds 0,1,2")
    return list(out)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def format_seeds(seeds: Sequence[int]) -> str:
    """The text `parse_seeds` reads back as `seeds`: runs of consecutive seeds as ranges ([0, 1, 2, 5] -> "0-2,5")."""
    parts: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if j == i else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)


def parse_list(text: str, what: str) -> list[str]:
    items = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not items:
        raise BenchError(f"no {what} given")
    return items
