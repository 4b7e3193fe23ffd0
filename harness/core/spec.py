"""What a run is: the presets every method of a grid shares, and the frozen `RunSpec` whose hash is the run id.

A spec says everything a run's result depends on, in typed fields, so it can travel to another process or
node as JSON (`to_dict` / `from_dict`) and be checked at construction: the task, model, engine and dtype, the
prompt or method with its preset, method overrides and budget, the optimizer LLM's endpoint, the decoding and
answer reading, the seeds, the source of a transferred prompt, and a fingerprint of the data rows the run
reads (content, not path: an edited data file is a new run, never an old result).

Run-wide settings have one home: `PRESETS` (the reasoning length and prompt position every method of a grid
shares under a preset) and `NO_PRESET` (a plain `bench eval`). The CLI's defaults and help texts, the grid,
`bench optimize` and `bench eval` all read them from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.core.hashing import canonical_json, stable_hash
from harness.core.registry import Registry
from harness.core.types import READINGS, BenchError, Budget, Example, PromptPosition

# Fields added to RunSpec after run folders were written, with their default: left out of spec.json (and so of
# the run id) while they hold it.
LATER_FIELDS: dict[str, Any] = {"length_penalty": 0.0}
SPEC_VERSION = 2  # 1: untyped `extra`, no data fingerprint (`bench migrate` rewrites such folders)
KINDS = ("eval", "optimize")
SPLITS = ("train", "dev", "test")
ENGINES = ("hf", "vllm", "openai")  # resolved backends: `auto` never reaches a spec
DTYPES = ("float32", "bfloat16", "float16")
MAX_SEED = 2**32 - 1  # seeds of a run (--seed, --split-seed, --seeds): numpy's and most libraries' seed range
Override = str | int | float | bool | None


# ------------------------------------------------------------------------------------------- presets


@dataclass(frozen=True, kw_only=True)
class Preset:
    """The run-wide settings shared by every method of a grid under one name (a fair comparison)."""

    name: str
    max_new_tokens: int  # reasoning length of every dev/test evaluation (and of text-based methods' scoring)
    position: PromptPosition  # where every method's prompt goes
    about: str
    # A preset the methods have no sizes of their own for builds on `base` (each method's sizes under that
    # name), with `methods[method]` settings over them (harness.core.config.configure).
    base: str | None = None
    methods: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


PRESETS: Registry[Preset] = Registry("preset", fix="use paper, cpu, cpu-0.5b or smoke")
for _p in (
    Preset(name="paper", max_new_tokens=1024, position=PromptPosition.AFTER,
           about="the paper's sizes (GPU scale): 1024 reasoning tokens, prompt after the question"),
    # cpu: smollm2-135m writes reasoning only when the instruction comes before the question (mean reasoning
    # length on navigate train rows: after 1.0 token, before 45.4, assistant 0.0; docs/greater.md).
    Preset(name="cpu", max_new_tokens=128, position=PromptPosition.BEFORE,
           about="one BBH task in minutes on 2 CPU cores: 128 reasoning tokens, prompt before the question"),
    # cpu-0.5b: qwen2.5-coder-0.5b writes long reasoning (124 of 128 tokens on average on boolean_expressions dev
    # rows, cut short) and follows the paper's layout; the methods keep their cpu sizes except GReaTer's,
    # which a cell of this ~5x larger model must fit into an hour on 2 cores (docs/greater.md).
    Preset(name="cpu-0.5b", max_new_tokens=256, position=PromptPosition.AFTER, base="cpu",
           methods={"greater": {"n_train": 8, "steps": 6, "train_reasoning_tokens": 128, "keep": 2, "dev_limit": 30,
                                "rescore_with": "task_model"}},
           about="a 0.5B instruct model on 2 CPU cores: 256 reasoning tokens, prompt after the question; the "
                 "methods' cpu sizes (GReaTer: N=8, 6 steps)"),
    Preset(name="smoke", max_new_tokens=32, position=PromptPosition.AFTER,
           about="seconds, for tests: 32 reasoning tokens"),
):
    PRESETS.add(_p.name, _p)
del _p

# `bench eval` without --preset: the paper's layout with a reasoning length a CPU can afford.
NO_PRESET = Preset(name="none", max_new_tokens=256, position=PromptPosition.AFTER,
                   about="no preset: 256 reasoning tokens, prompt after the question")


def preset_settings(preset: str | None) -> Preset:
    """The named preset (did-you-mean on a typo), or `NO_PRESET` for None."""
    return NO_PRESET if preset is None else PRESETS.get(preset)


def preset_help(setting: str, *, none: bool = False) -> str:
    """'paper 1024, cpu 128, smoke 32' for a help text, read from the presets themselves."""
    values = [(p.name, getattr(p, setting)) for p in map(PRESETS.get, PRESETS.names())]
    if none:
        values.append(("no preset", getattr(NO_PRESET, setting)))
    return ", ".join(f"{name} {getattr(v, 'value', v)}" for name, v in values)


# ------------------------------------------------------------------------------------------- data


def data_fingerprint(examples: Iterable[Example], reading_key: str = "") -> str:
    """A hash of the rows a run reads: ids, inputs, golds and allowed answers, in order (never the path), and
    the task's non-default answer-reading settings (`Task.reading_key`: a custom task's sidecar)."""
    h = hashlib.sha256(reading_key.encode()) if reading_key else hashlib.sha256()
    for ex in examples:
        opts = ex.meta.get("options")
        row = [ex.id, ex.input, ex.target, list(opts) if opts is not None else None]
        h.update(canonical_json(row, ascii=False).encode())  # a list: key order plays no part
        h.update(b"\n")
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True, kw_only=True)
class OptimizerEndpoint:
    """The optimizer LLM of text-based methods: a model, and the backend (and server) that serves it.

    backend None: the task model's own backend. "openai" needs a base URL (the key comes from OPENAI_API_KEY
    and is never recorded)."""

    model: str
    backend: str | None = None
    base_url: str | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise BenchError("the optimizer model must be named: --optimizer-model NAME")
        if self.backend is not None and self.backend not in ENGINES:
            raise BenchError(f"unknown optimizer backend {self.backend!r}: use one of {', '.join(ENGINES)}")
        if self.backend == "openai" and not self.base_url:
            raise BenchError("--optimizer-backend openai needs --optimizer-model NAME and --base-url URL")


@dataclass(frozen=True, kw_only=True)
class TransferSource:
    """Where a transferred prompt comes from: the optimize cell's run id, its task model and preset."""

    run: str
    model: str
    preset: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that decides a run's result. Frozen and validated; its hash is the run id."""

    kind: str  # "eval" (score one prompt) or "optimize" (a grid cell: optimize, then dev and test)
    task: str
    model: str
    data: str  # `data_fingerprint` of the rows read: the split (eval) or train + dev + test (optimize)
    backend: str = "hf"
    dtype: str = "float32"
    method: str = "zs-cot"  # optimize: the method; eval: "prompt" or the method whose prompt is scored
    prompt: str | None = None  # eval: the instruction (None: none)
    preset: str | None = None  # optimize: the method sizes; the position and reasoning length below follow it
    position: PromptPosition = NO_PRESET.position
    max_new_tokens: int = NO_PRESET.max_new_tokens  # reasoning length of the evaluations
    split: str = "test"  # eval: the split scored
    limit: int | None = None  # score only the first N rows of the split (optimize: of the test split)
    seed: int = 0
    split_seed: int | None = None
    primary_reading: str | None = None  # None: `options` for closed answer sets, `greedy` otherwise
    budget: Budget | None = None  # optimize: the common budget
    optimizer: OptimizerEndpoint | None = None  # optimize: the optimizer LLM (None: the task model)
    overrides: tuple[tuple[str, Override], ...] = ()  # optimize: method settings over the preset's, sorted
    source: TransferSource | None = None  # eval of a transferred prompt
    length_penalty: float = 0.0  # optimize: selection score - L x prompt tokens / 100 (`--length-penalty`); 0: off

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: normalise once, here)
        try:
            set_("position", PromptPosition(self.position))
        except ValueError:
            raise BenchError(f"unknown position {self.position!r}: use one of {', '.join(p.value for p in PromptPosition)}") from None
        if isinstance(self.overrides, Mapping):
            set_("overrides", tuple(sorted(self.overrides.items())))
        else:
            set_("overrides", tuple(sorted((str(k), v) for k, v in self.overrides)))
        if self.kind not in KINDS:
            raise BenchError(f"unknown run kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if not self.task or not self.model:
            raise BenchError("a run needs a task and a model")
        if not self.data:
            raise BenchError("a run spec needs the fingerprint of its data rows (harness.core.spec.data_fingerprint)")
        if self.backend not in ENGINES:
            raise BenchError(f"unknown backend {self.backend!r} in a run spec: use one of {', '.join(ENGINES)}")
        if self.dtype not in DTYPES:
            raise BenchError(f"unknown dtype {self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.preset is not None:
            PRESETS.get(self.preset)
        if self.split not in SPLITS:
            raise BenchError(f"unknown split {self.split!r}: use train, dev or test")
        if self.limit is not None and self.limit < 1:
            raise BenchError(f"--limit must be at least 1 (got {self.limit})")
        if self.max_new_tokens < 1:
            raise BenchError(f"--max-new-tokens must be at least 1 (got {self.max_new_tokens})")
        for flag, seed in (("--seed", self.seed), ("--split-seed", self.split_seed)):
            if seed is not None and seed < 0:
                raise BenchError(f"{flag} must be a non-negative integer (got {seed}): use 0, 1, 2, ...")
            if seed is not None and seed > MAX_SEED:
                raise BenchError(f"{flag} {seed} is too large: seeds go from 0 to {MAX_SEED}")
        if self.primary_reading is not None and self.primary_reading not in READINGS:
            raise BenchError(f"unknown reading {self.primary_reading!r}: use one of {', '.join(READINGS)}")
        if self.budget is not None:
            for name in ("task_tokens", "optimizer_calls", "wall_seconds"):
                v = getattr(self.budget, name)
                if v is not None and v <= 0:
                    flag = "--budget" if name == "task_tokens" else name
                    raise BenchError(f"{flag} must be positive (got {v}); leave it out for no limit")
        if self.kind == "optimize" and self.preset is None:
            raise BenchError("an optimize run needs a preset (paper, cpu, cpu-0.5b or smoke)")
        if self.length_penalty < 0 or self.length_penalty != self.length_penalty:
            raise BenchError(f"--length-penalty must be 0 or more (got {self.length_penalty})")
        if self.kind == "eval" and (self.budget or self.optimizer or self.overrides or self.length_penalty):
            raise BenchError("budget, optimizer and method overrides belong to optimize runs, not eval runs")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON (spec.json; its hash is the run id). Fields added after run folders existed
        (`LATER_FIELDS`) are written only when set, so a folder written before them reads back, and hashes, the same."""
        d = dataclasses.asdict(self)
        d["position"] = self.position.value
        d["overrides"] = dict(self.overrides)
        for name, default in LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        d = dict(d)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            hint = " (a record from before typed specs: run `bench migrate RESULTS` once)" if "extra" in unknown else ""
            raise BenchError(f"unknown run spec field(s) {', '.join(unknown)}{hint}")
        if d.get("budget") is not None:
            d["budget"] = Budget(**d["budget"])
        if d.get("optimizer") is not None:
            d["optimizer"] = OptimizerEndpoint(**d["optimizer"])
        if d.get("source") is not None:
            d["source"] = TransferSource(**d["source"])
        return cls(**d)

    # ------------------------------------------------------------------ identity
    @property
    def run_id(self) -> str:
        task = self.task.rsplit("/", 1)[-1].removesuffix(".jsonl")  # custom:/path/x.jsonl -> x
        slug = f"{self.kind}-{self.method}-{task.replace(':', '_')}-{self.model.rstrip('/').split('/')[-1]}"
        slug = safe_name(slug)  # one folder, never nested
        return f"{slug}-{stable_hash(self.to_dict(), 10)}"

    @property
    def optimizer_model(self) -> str:
        return self.optimizer.model if self.optimizer else self.model


def safe_name(text: str) -> str:
    """`text` as one file or folder name: anything but letters, digits, "-", "_" and "." becomes "_"."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
