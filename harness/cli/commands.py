"""`bench tasks|models|methods|eval|optimize`: listing, scoring one instruction, optimizing one prompt.

Thin: each command checks its inputs, builds specs and calls the library (`harness.runner`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.backends import resolve_backend
from harness.cli.export import EvalEngine, check_engine, cross_check
from harness.cli.options import (
    Backend,
    BaseUrl,
    BatchSize,
    BudgetTokens,
    Cache,
    DataDir,
    Device,
    Dtype,
    EvalPreset,
    LengthPenalty,
    Limit,
    MaxNewTokens,
    OptimizerBackend,
    OptimizerModel,
    Position,
    Preset,
    Reading,
    Results,
    Seed,
    SplitName,
    SplitSeed,
    Threads,
    check_cache,
    check_model,
    default_results,
    err,
    friendly,
    out,
    print_table,
    seed_int,
)
from harness.core.context import ProgressEvent
from harness.core.io import check_writable
from harness.core.spec import RunSpec, preset_settings
from harness.core.types import READINGS, ZERO_SHOT_COT


@friendly
def tasks_cmd() -> None:
    """List the built-in tasks and groups."""
    from tasks import get_task, task_names

    names = task_names()
    table = Table()
    table.add_column("task", no_wrap=True, min_width=max(map(len, names)))  # names are never cut
    table.add_column("answer format", no_wrap=True)
    table.add_column("options", overflow="fold")
    for name in names:
        t = get_task(name)
        table.add_row(name, t.answer_format.value, " ".join(t.options) or "-")
    print_table(table)
    out.print("groups: bbh (all 27 BBH tasks), bbh21 (the 21 of the GReaTer paper); custom tasks: custom:PATH.jsonl")


@friendly
def models_cmd() -> None:
    """List the model aliases (any hub id or local Hugging Face folder works too)."""
    from harness.backends.models import list_models

    table = Table("alias", "description", "licence", "status")
    for row in list_models():
        table.add_row(row["alias"], row["description"], row["licence"], row["status"])
    print_table(table)
    out.print("Also accepted: a local Hugging Face model folder, or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct.")


@friendly
def eval_cmd(
    model: Annotated[str, typer.Option(help="Model alias (`bench models`), local folder or hub id.")] = "smollm2-135m",
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks or groups (`bench tasks`).")] = "bbh:navigate",
    prompt: Annotated[str, typer.Option(help="The instruction to evaluate; '' for none.")] = ZERO_SHOT_COT,
    split: Annotated[SplitName, typer.Option(help="train, dev or test.")] = "test",
    limit: Limit = None,
    preset: EvalPreset = None,
    position: Position = None,
    max_new_tokens: MaxNewTokens = None,
    backend: Backend = "auto",
    base_url: BaseUrl = None,
    dtype: Dtype = "float32",
    device: Device = None,
    threads: Threads = None,
    batch_size: BatchSize = 8,
    reading: Reading = None,
    split_seed: SplitSeed = None,
    seed: Annotated[int, typer.Option(parser=seed_int, help="Run seed (recorded; used by sampled decoding).")] = 0,
    cache: Cache = True,
    results: Results = None,  # type: ignore[assignment]  (None: BENCH_RESULTS or bench-results)
    data_dir: DataDir = None,
    engine: Annotated[
        EvalEngine, typer.Option(help="harness, or lm-eval: also re-score each run with lm-eval in-process and compare (lmeval extra).")
    ] = "harness",
) -> None:
    """Evaluate one instruction with zero-shot chain of thought on tasks; print a table; write run folders."""
    from harness.cli.display import Display, progress_seconds
    from harness.runner.data import RunData
    from harness.runner.pool import ModelPool
    from harness.runner.records import RunFolder
    from harness.runner.run import run_eval
    from tasks import expand_tasks

    results = results or default_results()
    interval = progress_seconds()
    backend = resolve_backend(backend)  # recorded as the engine actually used
    check_engine(engine, backend)
    p = preset_settings(preset)
    names = expand_tasks(tasks)
    data = RunData(data_dir)
    specs = [  # every name, split and data file checked before any model loads
        RunSpec(
            kind="eval", task=name, model=model, data=data.eval_fingerprint(name, split, limit, split_seed),
            backend=backend, dtype=dtype, method="prompt", prompt=prompt or None, preset=preset,
            position=position or p.position, max_new_tokens=max_new_tokens or p.max_new_tokens, split=split,
            limit=limit, seed=seed, split_seed=split_seed, primary_reading=reading,
        )
        for name in names
    ]
    check_model(model, backend, base_url)
    check_writable(results)
    check_cache(cache)
    pool = ModelPool(cache=cache, threads=threads, batch_size=batch_size, device=device)
    summaries = []
    with Display(err, interval=interval) as display:
        try:
            for spec in specs:
                folder = RunFolder(results, spec)
                if folder.finished:  # read back: no model is loaded for a finished run
                    summaries.append((spec, folder.summary()))
                    continue
                if not pool.loads:  # the pool keeps the model for every task: one load, one note
                    display.note(f"loading {model} ({backend}, {dtype})")
                generator = pool.generator(model, backend=backend, dtype=dtype, base_url=base_url)
                tick = display.tracker(spec.task)
                summaries.append((spec, run_eval(spec, generator, data=data, out=results, progress=tick)))
        finally:
            pool.close()
    _print_summaries(summaries, results)
    cross_check(engine, [results / spec.run_id for spec in specs], data_dir=data_dir, batch_size=batch_size)


@friendly
def methods_cmd() -> None:
    """List the prompt optimization methods, one line each."""
    from harness.core.methods import describe_methods

    table = Table("method", "what it does", box=None, show_header=False)
    for name, about in describe_methods():
        table.add_row(name, about)
    print_table(table)


@friendly
def optimize_cmd(
    method: Annotated[str, typer.Option(help="The method (`bench methods`).")] = "greater",
    model: Annotated[str, typer.Option(help="Task model: alias, local folder or hub id.")] = "smollm2-135m",
    task: Annotated[str, typer.Option(help="One task (`bench tasks`).")] = "bbh:navigate",
    preset: Preset = "cpu",
    seed: Seed = 0,
    position: Position = None,
    max_new_tokens: MaxNewTokens = None,
    optimizer_model: OptimizerModel = None,
    optimizer_backend: OptimizerBackend = None,
    base_url: BaseUrl = None,
    backend: Backend = "auto",
    budget_tokens: BudgetTokens = None,
    length_penalty: LengthPenalty = 0.0,
    reading: Reading = None,
    limit: Limit = None,
    dtype: Dtype = "float32",
    device: Device = None,
    threads: Threads = None,
    batch_size: BatchSize = 8,
    cache: Cache = True,
    results: Results = None,  # type: ignore[assignment]
    data_dir: DataDir = None,
) -> None:
    """Optimize a prompt with one method; report its dev and test accuracy against zero-shot CoT, and its cost.

    The same cell as `bench run` builds for these options: both commands reuse each other's run folders.
    """
    from harness.cli.display import Display, progress_seconds
    from harness.runner.cell import run_cell
    from harness.runner.cells import GridSettings, resolve_grid
    from harness.runner.data import RunData
    from harness.runner.pool import ModelPool
    from tasks import get_task

    results = results or default_results()
    interval = progress_seconds()
    get_task(task)
    settings = GridSettings(
        preset=preset, position=position, max_new_tokens=max_new_tokens, limit=limit, reading=reading, dtype=dtype,
        budget_tokens=budget_tokens, length_penalty=length_penalty, optimizer_model=optimizer_model, optimizer_backend=optimizer_backend,
        base_url=base_url, backend=backend,
    )
    grid = resolve_grid([method], [task], [model], [seed], settings, data=RunData(data_dir))  # checked first
    (spec,) = grid.specs
    optimizer = grid.optimizers(spec)  # the one built while resolving
    check_model(model, spec.backend, base_url)
    if spec.optimizer is not None and optimizer.needs.optimizer_llm:  # opened only then (run_cell)
        check_model(spec.optimizer.model, spec.optimizer.backend or spec.backend, spec.optimizer.base_url)
    check_writable(results)
    check_cache(cache)

    with Display(err, interval=interval) as display:
        track = display.tracker(task)

        def progress(e: ProgressEvent) -> None:  # the method's lines named after it
            named = e.counts or e.text.startswith(method)
            track(e if named else dataclasses.replace(e, text=f"{method} {e.text}"))

        pool = ModelPool(cache=cache, threads=threads, batch_size=batch_size, device=device)
        summary = run_cell(spec, pool=pool, data=grid.data, optimizer=optimizer, out=results, progress=progress)
    table = Table("", "prompt", "dev", "test", title=f"{method} on {task} ({model}, preset {preset}, seed {seed})")
    table.add_row("optimized", summary["prompt"], f"{100 * summary['dev_accuracy']:.1f}", f"{100 * summary['test_accuracy']:.1f}")
    table.add_row("zero-shot CoT", ZERO_SHOT_COT, "", f"{100 * summary['zero_shot_cot_test_accuracy']:.1f}")
    print_table(table)
    c = summary["cost"]
    out.print(
        f"cost: task calls {c['task_calls']}, task tokens {c['task_tokens_in'] + c['task_tokens_out']}, "
        f"optimizer calls {c['optimizer_calls']}, forward {c['forward_passes']}, backward {c['backward_passes']}, "
        f"unparseable {c['unparseable']}, {c['wall_seconds']:.0f} s"
    )
    out.print(f"run folder: {results / spec.run_id}")


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
    print_table(table)
    for _spec, s in summaries:
        for note in s.get("notes", []):
            out.print(f"note: {note}")
    out.print(f"run folders: {', '.join(str(out_dir / spec.run_id) for spec, _ in summaries)}")


