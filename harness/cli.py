"""`bench`: the command line. Thin: it parses options, builds specs and calls the library."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.backends import resolve_backend
from harness.types import READINGS, BenchError, PromptPosition, RunSpec

app = typer.Typer(
    help="greater-bench: benchmark prompt optimizers (GReaTer, APE, OPRO, ProTeGi, TextGrad) on reasoning tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Errors the user can fix print as one line with no traceback, and exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as e:
            # escaped: fixes such as `pip install "greater-bench[lmeval]"` hold brackets rich would eat as markup
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: finished runs are kept; run the same command again to continue")
            raise typer.Exit(130) from None

    return wrapper


Backend = Annotated[
    str,
    typer.Option(
        envvar="BENCH_BACKEND",
        help="Decoding engine: hf, vllm, openai (with --base-url) or auto (vllm when installed, else hf). "
        "Gradients always use hf.",
    ),
]
Device = Annotated[
    Optional[str],
    typer.Option(
        help="Torch device of the hf backend (gradients; decoding with --backend hf): cpu, cuda, cuda:N or mps "
        "(default: cuda if available, else mps, else cpu). Recorded in spec.json, not in the run id.",
    ),
]
Threads = Annotated[Optional[int], typer.Option(help="CPU threads (hf: torch threads; vllm: cores bound).")]
BatchSize = Annotated[int, typer.Option(help="Generation batch size (hf; vllm: max concurrent sequences).")]
DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", envvar="BENCH_DATA_DIR", help="Folder with bbh/, gsm8k/, folio/ in their official formats; else the hub via `datasets`."),
]


@app.command("tasks")
@friendly
def tasks_cmd() -> None:
    """List the built-in tasks and groups."""
    from tasks import get_task, task_names

    table = Table("task", "answer format", "options")
    for name in task_names():
        t = get_task(name)
        table.add_row(name, t.answer_format.value, " ".join(t.options) or "-")
    out.print(table)
    out.print("groups: bbh (all 27 BBH tasks), bbh21 (the 21 of the GReaTer paper); custom tasks: custom:PATH.jsonl")


@app.command("models")
@friendly
def models_cmd() -> None:
    """List the model aliases (any hub id or local Hugging Face folder works too)."""
    from harness.models import list_models

    table = Table("alias", "description", "status")
    for row in list_models():
        table.add_row(row["alias"], row["description"], row["status"])
    out.print(table)
    out.print("Also accepted: a local Hugging Face model folder, or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct.")


@app.command("eval")
@friendly
def eval_cmd(
    model: Annotated[str, typer.Option(help="Model alias (`bench models`), local folder or hub id.")] = "smollm2-135m",
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks or groups (`bench tasks`).")] = "bbh:navigate",
    prompt: Annotated[str, typer.Option(help="The instruction to evaluate; '' for none.")] = "Let's think step by step.",
    split: Annotated[str, typer.Option(help="train, dev or test.")] = "test",
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N examples of the split.")] = None,
    position: Annotated[PromptPosition, typer.Option(help="Where the instruction goes.")] = PromptPosition.AFTER,
    backend: Backend = "auto",
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server URL (backend openai).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Reasoning length limit (the paper uses 1024).")] = 256,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16 (hf and vllm backends).")] = "float32",
    device: Device = None,
    threads: Threads = None,
    batch_size: BatchSize = 8,
    reading: Annotated[Optional[str], typer.Option(help="Primary answer reading: greedy, options or fallback (default: options for closed answer sets, else greedy).")] = None,
    split_seed: Annotated[Optional[int], typer.Option(help="Reshuffle rows before splitting (default: the paper's file order).")] = None,
    seed: Annotated[int, typer.Option(help="Run seed (recorded; used by sampled decoding).")] = 0,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Use the shared response cache.")] = True,
    out_dir: Annotated[Path, typer.Option("--out", help="Where run folders go.")] = Path("results"),
    data_dir: DataDir = None,
    engine: Annotated[str, typer.Option(help="harness, or lm-eval: also re-score each run with lm-eval in-process and compare (lmeval extra).")] = "harness",
) -> None:
    """Evaluate one instruction with zero-shot chain of thought on tasks; print a table; write run folders."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.backends import open_generator
    from harness.run import run_eval
    from tasks import expand_tasks

    if reading is not None and reading not in READINGS:
        raise BenchError(f"unknown reading {reading!r}: use one of {', '.join(READINGS)}")
    backend = resolve_backend(backend)  # recorded as the engine actually used
    check_engine(engine, backend)
    names = expand_tasks(tasks)
    for name in names:  # fail on a bad task name before loading any model
        from tasks import get_task

        get_task(name)
    specs = [
        RunSpec(
            kind="eval", task=name, model=model, backend=backend, method="prompt", prompt=prompt or None,
            position=position, split=split, limit=limit, max_new_tokens=max_new_tokens, dtype=dtype,
            seed=seed, split_seed=split_seed, primary_reading=reading,
        )
        for name in names
    ]
    generator = open_generator(model, backend=backend, dtype=dtype, threads=threads, batch_size=batch_size, base_url=base_url, cache=cache,
                               device=device)
    summaries = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        for spec in specs:
            job = bar.add_task(spec.task, total=None)

            def tick(phase: str, done: int, total: int, job: Any = job, name: str = spec.task) -> None:
                bar.update(job, description=f"{name} {phase}", completed=done, total=total)

            summaries.append((spec, run_eval(spec, generator, data_dir=data_dir, out=out_dir, progress=tick)))
            bar.remove_task(job)
    _print_summaries(summaries, out_dir)
    cross_check(engine, [out_dir / spec.run_id for spec in specs], data_dir=data_dir, batch_size=batch_size)


@app.command("methods")
@friendly
def methods_cmd() -> None:
    """List the prompt optimization methods."""
    from harness.methods import load_methods

    for name in load_methods():
        out.print(name)


@app.command("optimize")
@friendly
def optimize_cmd(
    method: Annotated[str, typer.Option(help="greater, ape, opro, protegi, textgrad, zs-cot (`bench methods`).")] = "greater",
    model: Annotated[str, typer.Option(help="Task model: alias, local folder or hub id.")] = "smollm2-135m",
    task: Annotated[str, typer.Option(help="One task (`bench tasks`).")] = "bbh:navigate",
    preset: Annotated[str, typer.Option(help="paper (GPU scale), cpu (~15 min per BBH task here) or smoke.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Root seed of the run.")] = 0,
    position: Annotated[Optional[PromptPosition], typer.Option(help="Where the prompt goes (default: the preset's; cpu: before).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Reasoning length limit (default: the preset's; cpu: 128).")] = None,
    optimizer_model: Annotated[Optional[str], typer.Option(help="Optimizer LLM for text-based methods (default: the task model).")] = None,
    optimizer_backend: Annotated[str, typer.Option(help="hf, or openai for an OpenAI-compatible server (with --base-url).")] = "hf",
    base_url: Annotated[Optional[str], typer.Option(help="URL of the optimizer LLM's OpenAI-compatible server.")] = None,
    backend: Backend = "auto",
    budget_tokens: Annotated[Optional[int], typer.Option("--budget", help="Common budget: task-model tokens (in + out).")] = None,
    reading: Annotated[Optional[str], typer.Option(help="Primary answer reading (default: options for closed sets, else greedy).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate the final prompt on the first N test rows only.")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = "float32",
    device: Device = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Use the shared response cache.")] = True,
    out_dir: Annotated[Path, typer.Option("--out", help="Where run folders go.")] = Path("results"),
    data_dir: DataDir = None,
) -> None:
    """Optimize a prompt with one method; report its dev and test accuracy against zero-shot CoT, and its cost.

    The same cell as `bench run` builds for these options: both commands reuse each other's run folders.
    """
    from harness.grid import Cell, GridSettings, cell_optimizer, run_cell
    from harness.pool import ModelPool
    from tasks import get_task

    if reading is not None and reading not in READINGS:
        raise BenchError(f"unknown reading {reading!r}: use one of {', '.join(READINGS)}")
    get_task(task)
    settings = GridSettings(
        preset=preset, position=position, max_new_tokens=max_new_tokens, limit=limit, reading=reading, dtype=dtype,
        budget_tokens=budget_tokens, optimizer_model=optimizer_model, optimizer_backend=optimizer_backend,
        base_url=base_url, backend=backend,
    )
    spec = Cell(method=method, task=task, model=model, seed=seed).spec(settings)
    cell_optimizer(spec)  # a bad method, preset or setting fails before any model loads

    def progress(msg: str) -> None:
        err.print(msg if msg.startswith(method) else f"{method} {msg}", highlight=False)

    summary = run_cell(spec, pool=ModelPool(cache=cache, device=device), data_dir=data_dir, out=out_dir, progress=progress)
    table = Table("", "prompt", "dev", "test", title=f"{method} on {task} ({model}, preset {preset}, seed {seed})")
    table.add_row("optimized", summary["prompt"], f"{100 * summary['dev_accuracy']:.1f}", f"{100 * summary['test_accuracy']:.1f}")
    table.add_row("zero-shot CoT", "Let's think step by step.", "", f"{100 * summary['zero_shot_cot_test_accuracy']:.1f}")
    out.print(table)
    c = summary["cost"]
    out.print(
        f"cost: task calls {c['task_calls']}, task tokens {c['task_tokens_in'] + c['task_tokens_out']}, "
        f"optimizer calls {c['optimizer_calls']}, forward {c['forward_passes']}, backward {c['backward_passes']}, "
        f"unparseable {c['unparseable']}, {c['wall_seconds']:.0f} s"
    )
    out.print(f"run folder: {out_dir / spec.run_id}")


def _print_summaries(summaries: list[tuple[RunSpec, dict[str, Any]]], out_dir: Path) -> None:
    table = Table(title="accuracy % [95% CI]; * = primary reading")
    table.add_column("task", no_wrap=True)
    for name in ("n", *READINGS, "invalid greedy", "reasoning tokens"):
        table.add_column(name, justify="right")
    for spec, s in summaries:
        cells = []
        for r in READINGS:
            v = s["readings"].get(r)
            if v is None:
                cells.append("-")
                continue
            lo, hi = v["ci95"]
            star = "*" if r == s["primary"] else ""
            cells.append(f"{100 * v['accuracy']:.0f}{star} [{100 * lo:.0f}-{100 * hi:.0f}]")
        inv = s["readings"].get("greedy", {}).get("invalid")
        table.add_row(spec.task, str(s["n"]), *cells, "-" if inv is None else f"{100 * inv:.0f}%", f"{s['mean_reasoning_tokens']:.0f}")
    out.print(table)
    for spec, s in summaries:
        for note in s.get("notes", []):
            out.print(f"note: {note}")
    out.print(f"run folders: {', '.join(str(out_dir / spec.run_id) for spec, _ in summaries)}")


from harness.cli_grid import register as _register_grid  # noqa: E402  (bench run, leaderboard, transfer)

_register_grid(app)

from harness.cli_export import check_engine, cross_check  # noqa: E402  (bench eval --engine lm-eval)
from harness.cli_export import register as _register_export  # noqa: E402  (bench export lm-eval)

_register_export(app)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
