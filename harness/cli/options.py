"""What every `bench` command shares: the consoles, the one-line error wrapper and the common options.

Defaults and help texts of run-wide settings are read from their one home, `harness.core.spec` (presets),
so `--help` cannot drift from what a run does. An option with a fixed set of values is typed as a `Literal` of
the tuple that names them where they are used (`DTYPES`, `READINGS`, `BACKENDS`, ...): typer turns it into a
choice, lists the values in `--help`, and refuses anything else while parsing with click's usage error
naming the option and its values.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

from harness.backends import BACKENDS
from harness.core.env import env_path, env_secret
from harness.core.records import DEFAULT_RESULTS  # bench-results: the user's runs, apart from results/ (README)
from harness.core.spec import DTYPES, ENGINES, PRESETS, SPLITS, preset_help
from harness.core.types import READINGS, BenchError, PromptPosition

out = Console()
err = Console(stderr=True)

RESULTS_ENV = "BENCH_RESULTS"


def default_results() -> Path:
    return env_path(RESULTS_ENV) or DEFAULT_RESULTS


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit or preemption, `kill`): stops a command the way Ctrl-C does."""


_signals: list[int] = []  # the signals that stopped this command (a library may re-raise a plain KeyboardInterrupt)


def _terminate(signum: int, frame: Any) -> None:
    _signals.append(signum)
    raise Terminated()


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Errors the user can fix print as one line with no traceback, and exit non-zero. SIGTERM is taken like
    Ctrl-C (workers stopped, finished runs kept, unfinished ones resumable) instead of killing the process
    mid-write; exit status 143 as for a terminated process."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import signal
        import threading

        previous = None
        _signals.clear()
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return fn(*args, **kwargs)
        except BenchError as e:
            # escaped: fixes such as `pip install "greater-bench[lmeval]"` hold brackets rich would eat as markup
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as e:  # a filesystem error the records layer did not name (it names most)
            where = f" {e.filename}" if getattr(e, "filename", None) else ""
            err.print(f"[red]error:[/red] {escape(e.strerror or str(e))}{escape(where)}: check the path and free space",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            terminated = bool(_signals)  # set by the handler, whatever exception the library re-raised
            what = "terminated (SIGTERM)" if terminated else "interrupted"
            err.print(f"{what}: finished runs are kept; run the same command again to continue")
            raise typer.Exit(143 if terminated else 130) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def print_table(table: Any, console: Console | None = None) -> None:
    """Print a rich table whole. On a terminal rich fits it to the window; in a log or a pipe (no terminal,
    where rich would assume 80 columns and cut headers to "gre…") it is printed at the width its content needs,
    so every header and cell is there to read."""
    console = console or out
    if console.is_terminal:
        console.print(table)
        return
    width = Console(width=100_000, color_system=None).measure(table).maximum
    Console(file=console.file, width=max(width, 20), color_system=None, force_terminal=False).print(table)


# Third-party progress bars (tqdm: transformers' GGUF conversion and weight loading, datasets, the hub) draw
# with carriage returns, which a log file shows as one line per redraw. The switches each library reads:
QUIET_PROGRESS_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def quiet_progress_bars(stream: Any = None) -> bool:
    """When `stream` (stderr by default) is not a terminal, switch third-party progress bars off for this process
    and its children (environment variables, read when those libraries load, plus their switches when already
    loaded). The harness's own progress lines (`harness.cli.display`) are not affected. Returns whether it did."""
    import sys

    stream = stream if stream is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return False
    for key, value in QUIET_PROGRESS_ENV.items():
        os.environ.setdefault(key, value)
    if "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging

        tf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    return True


def check_cache(cache: bool) -> None:
    """The cache folder must be usable before any model loads (BENCH_CACHE_DIR naming a file, read-only, ...)."""
    from harness.backends.models import cache_dir
    from harness.core.io import check_writable

    try:
        check_writable(cache_dir(), "cache")
    except BenchError as e:
        also = " and so does the response cache; --no-cache skips only the latter" if cache else ""
        raise BenchError(f"{e} (BENCH_CACHE_DIR; converted models live there{also})") from None


def check_model(model: str, backend: str, base_url: str | None = None) -> None:
    """The model name must name something loadable before anything runs: an alias, a local Hugging Face folder
    (with config.json) or a hub id (reachable, or in the local hub cache). Nothing is loaded or converted here."""
    from harness.backends.models import PACKAGED, resolve_model

    if backend == "openai":  # the server's own model name
        if not base_url:
            raise BenchError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        env_secret("OPENAI_API_KEY")  # what the client will send
        return
    if backend == "vllm":  # its environment variables (BENCH_VLLM_EAGER, VLLM_CPU_*) before the engine reads them
        from harness.backends.vllm import check_env

        check_env()
    if model not in PACKAGED:  # aliases resolve by converting their GGUF: loading, so left to the load
        resolve_model(model)


def seed_int(value: Any) -> int:
    """An integer in ASCII digits (click's INT is `int()`, which also reads '٣' as 3 and '1_0' as 10). A sign is
    read, so a negative seed gets the run spec's own message."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise typer.BadParameter(f"{value!r} is not a seed: use a non-negative integer in ASCII digits (0, 1, 2, ...)")
    return int(text)


_PRESETS = ", ".join(PRESETS.names())

# The fixed sets of values, as typer choices (a Literal of a tuple is a Literal of its items).
BackendName = Literal[BACKENDS]  # type: ignore[valid-type]
EngineName = Literal[ENGINES]  # type: ignore[valid-type]  (a resolved backend: no auto)
DtypeName = Literal[DTYPES]  # type: ignore[valid-type]
ReadingName = Literal[READINGS]  # type: ignore[valid-type]
SplitName = Literal[SPLITS]  # type: ignore[valid-type]
ExecutorName = Literal["local", "ray"]
FormatName = Literal["md", "csv", "html"]

Backend = Annotated[
    BackendName,
    typer.Option(
        envvar="BENCH_BACKEND",
        help="Decoding engine: hf, vllm, openai (with --base-url) or auto (vllm when installed, else hf). "
        "Gradients always use hf.",
    ),
]
Device = Annotated[
    str | None,
    typer.Option(
        help="Torch device of the hf backend (gradients; decoding with --backend hf): cpu, cuda, cuda:N or mps "
        "(default: cuda if available, else mps, else cpu). Recorded in spec.json, not in the run id.",
    ),
]
# Counts are checked by click while parsing (`min=1`): 0 or a negative number is a usage error naming the option,
# for every command alike (0 would otherwise fall back to a default silently: `--max-new-tokens 0`).
Threads = Annotated[int | None, typer.Option(min=1, help="CPU threads (hf: torch threads; vllm: cores bound).")]
BatchSize = Annotated[int, typer.Option(min=1, help="Generation batch size (hf; vllm: max concurrent sequences).")]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar="BENCH_DATA_DIR",
        help="Folder with bbh/, gsm8k/, folio/ in their official formats (default: ../shared/data or ./data when "
        "present, else the hub via `datasets`).",
    ),
]
Results = Annotated[
    Path | None,
    typer.Option("--results", "--out", envvar=RESULTS_ENV,
                 help="Results folder: run folders are written and read here (the committed reference set is results/)."),
]
Preset = Annotated[str, typer.Option(help=f"Run preset shared by every method: {_PRESETS}.")]
EvalPreset = Annotated[
    str | None,
    typer.Option(help=f"Run preset: {_PRESETS} (its reasoning length and prompt position; default: none)."),
]
Position = Annotated[
    PromptPosition | None,
    typer.Option(help=f"Where the prompt goes (default: the preset's: {preset_help('position', none=True)})."),
]
MaxNewTokens = Annotated[
    int | None,
    typer.Option(min=1, help=f"Reasoning length of the evaluations (default: the preset's: {preset_help('max_new_tokens', none=True)})."),
]
Reading = Annotated[
    ReadingName | None,
    typer.Option(help="Primary answer reading: greedy, options or fallback (default: options for closed answer sets, else greedy)."),
]
Dtype = Annotated[DtypeName, typer.Option(help=f"Weights dtype: {', '.join(DTYPES)} (hf and vllm backends).")]
Cache = Annotated[bool, typer.Option("--cache/--no-cache", help="Use the shared response cache.")]
Limit = Annotated[int | None, typer.Option(min=1, help="Score only the first N rows of the split (optimize: of the test split).")]
LengthPenalty = Annotated[float, typer.Option(
    "--length-penalty", help="Length objective for every method that selects prompts: selection score minus "
    "L x prompt tokens / 100 (recorded in the run spec; 0: off).")]
BudgetTokens = Annotated[int | None, typer.Option("--budget", help="Common budget per cell: task-model tokens (in + out).")]
OptimizerModel = Annotated[str | None, typer.Option(help="Optimizer LLM of text-based methods (default: the task model).")]
OptimizerBackend = Annotated[
    EngineName | None, typer.Option(help="Backend of the optimizer LLM: hf, vllm, or openai with --base-url (default: the task model's).")
]
BaseUrl = Annotated[str | None, typer.Option(help="URL of an OpenAI-compatible server (backend openai).")]
Isolate = Annotated[
    bool | None,
    typer.Option("--isolate/--no-isolate", help="Run each model in its own child process, or in this one "
                 "(default: auto, a child for backends such as vllm that own their process)."),
]

# bench run's executor (issue 14): local, or Ray on one machine or a cluster
Executor = Annotated[
    ExecutorName,
    typer.Option(help="local (one cell at a time, in this process or a child per model) or ray (cells in parallel "
                 "on a Ray cluster or a local Ray instance)."),
]
RayAddress = Annotated[
    str | None,
    typer.Option(envvar="RAY_ADDRESS", help="ray: the cluster to join (HEAD:6379; default: a new local instance sized to this machine)."),
]
CellCpus = Annotated[int | None, typer.Option(min=1, help="ray: CPUs per cell (default 1: one thread on a core of its own).")]
CellGpus = Annotated[float | None, typer.Option(help="ray: GPUs per cell (default 1 when the cluster has GPUs, else 0).")]
MaxParallel = Annotated[int | None, typer.Option(min=1, help="ray: at most this many cells at once (default: what the resources allow).")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="List the cells (finished, partial, to do) with estimated tokens and time; run nothing.")
]
Rate = Annotated[
    float | None, typer.Option(help="--dry-run: task-model tokens/s to estimate with (default: measured from finished cells).")
]
Seed = Annotated[int, typer.Option(parser=seed_int, help="Root seed of the run.")]
SplitSeed = Annotated[
    int | None,
    typer.Option(parser=seed_int, help="Reshuffle rows before splitting (default: the paper's file order)."),
]
