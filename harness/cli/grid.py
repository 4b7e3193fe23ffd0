"""`bench run`, `bench leaderboard`, `bench transfer` and `bench migrate`: thin wrappers over the runner and reports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from harness.cli.options import (
    Backend,
    BackendName,
    BaseUrl,
    BatchSize,
    BudgetTokens,
    Cache,
    CellCpus,
    CellGpus,
    DataDir,
    Device,
    DryRun,
    Dtype,
    Executor,
    FormatName,
    Isolate,
    LengthPenalty,
    Limit,
    MaxNewTokens,
    MaxParallel,
    OptimizerBackend,
    OptimizerModel,
    Position,
    Preset,
    Rate,
    RayAddress,
    Reading,
    Results,
    Threads,
    check_cache,
    check_model,
    default_results,
    err,
    friendly,
    out,
    print_table,
)
from harness.core.types import BenchError

REFERENCE_ONLY = ("no-instruction",)  # registered reference prompts that `--methods all` leaves out


@friendly
def run_cmd(
    methods: Annotated[str, typer.Option(help="Comma-separated methods (`bench methods`), or 'all'.")] = "all",
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks or groups (`bench tasks`).")] = "bbh:navigate",
    models: Annotated[str, typer.Option(help="Comma-separated task models: aliases, local folders or hub ids.")] = "smollm2-135m",
    seeds: Annotated[str, typer.Option(help="Root seeds: 0,1,2 or 0-2.")] = "0",
    preset: Preset = "cpu",
    position: Position = None,
    max_new_tokens: MaxNewTokens = None,
    limit: Limit = None,
    reading: Reading = None,
    budget_tokens: BudgetTokens = None,
    length_penalty: LengthPenalty = 0.0,
    optimizer_model: OptimizerModel = None,
    optimizer_backend: OptimizerBackend = None,
    base_url: BaseUrl = None,
    backend: Backend = "auto",
    dtype: Dtype = "float32",
    device: Device = None,
    threads: Threads = None,
    batch_size: BatchSize = 8,
    cache: Cache = True,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Record a failing cell's error and go on with the next.")] = False,
    isolate: Isolate = None,
    results: Results = None,
    data_dir: DataDir = None,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    cell_cpus: CellCpus = None,
    cell_gpus: CellGpus = None,
    max_parallel: MaxParallel = None,
    dry_run: DryRun = False,
    rate: Rate = None,
) -> None:
    """Run every (method, task, model, seed) cell: optimize, then score on dev and test. Re-running the same
    command skips finished cells and resumes unfinished ones from their last completed step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.core.context import ProgressEvent
    from harness.runner.cells import GridSettings, parse_list, parse_seeds, resolve_grid
    from harness.runner.data import RunData
    from harness.runner.grid import run_grid
    from harness.runner.plan import check_rate
    from harness.runner.pool import ModelPool, PoolSettings
    from harness.runner.progress import GridStatus
    from harness.runner.ray_executor import check_ray_address, probe_ray

    check_rate(rate)
    if executor == "ray":  # its form now; whether a cluster answers there before the grid starts (not for --dry-run)
        ray_address = check_ray_address(ray_address)

    results = results or default_results()
    check_cache(cache)
    method_names, model_names, seed_list = _methods(methods), parse_list(models, "model"), parse_seeds(seeds)
    settings = GridSettings(
        preset=preset, position=position, max_new_tokens=max_new_tokens, limit=limit, reading=reading, dtype=dtype,
        budget_tokens=budget_tokens, length_penalty=length_penalty, optimizer_model=optimizer_model, optimizer_backend=optimizer_backend,
        base_url=base_url, backend=backend,
    )
    from harness.runner.ray_executor import RaySettings

    ray_settings = RaySettings(address=ray_address, cell_cpus=cell_cpus, cell_gpus=cell_gpus, max_parallel=max_parallel)
    # the options resolved once: every cell's spec, its data rows and methods checked before any model loads
    grid = resolve_grid(method_names, tasks, model_names, seed_list, settings, data=RunData(data_dir))
    if dry_run:
        _dry_run(grid, settings, results, executor, ray_settings, rate)
        return
    from harness.core.io import check_writable

    for model in model_names:
        check_model(model, settings.backend)
    if executor == "ray":  # before the progress display starts
        from harness.runner.ray_executor import lock_folder

        probe_ray(ray_address)
        lock_folder()
    check_writable(results)
    pool = PoolSettings(cache=cache, threads=threads, batch_size=batch_size, device=device)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=err, transient=False) as bar, _executor(executor, ray_settings, pool) as ex:
        job = bar.add_task("cells", total=None, info="")
        live = err.is_terminal

        def on_status(s: GridStatus) -> None:
            info = s.line()
            desc = f"[bold]{s.cell}[/bold]" if s.event == "start" else "cells"
            bar.update(job, total=s.total, completed=s.done + s.failed, description=desc, info=info)
            if s.event == "skip":
                bar.console.print(f"[dim]finished already:[/dim] {s.cell}", highlight=False)
            elif s.event == "fail":
                bar.console.print(f"[red]failed:[/red] {s.cell}: {s.error}", highlight=False)
            elif not live and s.event in ("start", "finish", "end"):  # a log file gets the status as lines
                what = "" if s.cell is None else f"{s.event} {s.cell}: "
                bar.console.print(f"{what}{info}", highlight=False, markup=False)

        by_run = {s.run_id: s for s in grid.specs}

        def progress(e: ProgressEvent) -> None:
            s = by_run[e.run]
            bar.console.print(f"[dim]{s.method} {s.task} s{s.seed}[/dim] {escape(e.text)}", highlight=False)

        records = run_grid(grid, out=results, pool=ModelPool(pool), on_status=on_status, progress=progress,
                           keep_going=keep_going, isolate=isolate, executor=ex)
    _print_records(out, records)
    out.print(f"run folders in {results}; the table: bench leaderboard --results {results}")

@friendly
def leaderboard_cmd(
    results: Results = None,
    format: Annotated[FormatName, typer.Option("--format", help="md (README), csv (analysis) or html (a self-contained page).")] = "md",
    output: Annotated[Path | None, typer.Option(help="Write here (default: stdout; html: RESULTS/leaderboard.html).")] = None,
    plots: Annotated[Path | None, typer.Option(help="Also save the plots as PNG files in this folder.")] = None,
    data_dir: DataDir = None,
    targets: Annotated[str | None, typer.Option(
        help="Published numbers beside the measured ones: 'paper' (GReaTer Table 1 and 3; preset paper, greedy "
        "reading) with the difference and a verdict per row (md and html).")] = None,
) -> None:
    """Build the comparison table from the stored records (it is regenerated, never edited). The task data
    (--data-dir) gives the leakage check of records written before runs stored it."""
    from harness.core.io import atomic_write_text
    from harness.reports import leaderboard as report
    from harness.reports import render
    from harness.reports.loading import load_records, with_leakage
    from harness.runner.data import RunData

    results = results or default_results()
    records = load_records(results)
    if not records:
        raise BenchError(f"no finished runs in {results}: run `bench run` first")
    records = with_leakage(records, RunData(data_dir))
    board = report.leaderboard(records)
    paper = None
    if targets is not None:
        from harness.reports.targets import compare, load_targets

        chosen = load_targets(targets)
        paper = (chosen, compare(chosen, board, report.transfer_leaderboard(records)))
    if format == "md":
        text = render.to_markdown(board, report.transfer_matrices(records), report.transfer_leaderboard(records))
        if paper is not None:
            from harness.reports.targets import to_markdown

            text += "\n" + to_markdown(paper[1], paper[0])
    elif format == "csv":
        text = render.to_csv(board)
    else:
        text = render.page(records, targets=paper)
        output = output or results / "leaderboard.html"
    if plots is not None:
        _save_plots(records, board, plots)
        err.print(f"plots in {plots}")
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        err.print(f"wrote {output}")

@friendly
def transfer_cmd(
    eval_models: Annotated[str, typer.Option(help="Comma-separated models to score every stored prompt on.")],
    results: Results = None,
    methods: Annotated[str | None, typer.Option(help="Only these methods (comma-separated).")] = None,
    tasks: Annotated[str | None, typer.Option(help="Only these tasks (comma-separated).")] = None,
    source_models: Annotated[str | None, typer.Option(help="Only prompts optimized on these models.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Only prompts of these seeds' cells (0,1,2 or 0-2).")] = None,
    output: Annotated[Path | None, typer.Option(help="Where the matrices go (default: RESULTS/transfer).")] = None,
    cache: Cache = True,
    isolate: Isolate = None,
    backend: Annotated[
        BackendName | None,
        typer.Option(help="Decode the transfer evaluations with this backend (hf, vllm, auto) instead of each source run's own."),
    ] = None,
    device: Device = None,
    threads: Threads = None,
    batch_size: BatchSize = 8,
    data_dir: DataDir = None,
) -> None:
    """Score every stored optimized prompt on every listed model; write the source x target matrix of each
    method (CSV and heatmap PNG). Each model is loaded once; re-running skips finished evaluations."""
    from rich.table import Table

    from harness.core.context import ProgressEvent
    from harness.reports.leaderboard import matrix_title
    from harness.reports.render import pct
    from harness.reports.transfer import transfer_report
    from harness.runner.cells import parse_list, parse_seeds
    from harness.runner.pool import PoolSettings
    from harness.runner.transfer import run_transfer

    results = results or default_results()

    def progress(event: ProgressEvent) -> None:
        err.print(f"[dim]{event.phase}[/dim] {event.done}/{event.total} prompts", highlight=False)

    report_dir = output or results / "transfer"
    done = run_transfer(
        results, parse_list(eval_models, "model"),
        methods=parse_list(methods, "method") if methods else None, tasks=parse_list(tasks, "task") if tasks else None,
        source_models=parse_list(source_models, "model") if source_models else None,
        seeds=parse_seeds(seeds) if seeds is not None else None, data_dir=data_dir,
        settings=PoolSettings(cache=cache, threads=threads, batch_size=batch_size, device=device),
        progress=progress, report_dir=report_dir, isolate=isolate, backend=backend,
    )
    matrices = transfer_report(results, done.sources, done.models, report_dir=report_dir)
    for (preset, method), m in matrices.items():
        table = Table("optimized on \\ evaluated on", *map(str, m.columns), title=matrix_title(preset, method, m))
        for src, row in m.iterrows():
            table.add_row(str(src), *(pct(v) for v in row))
        print_table(table)
    if not matrices:
        out.print("no transfer pairs: every prompt was optimized on the evaluation models themselves")
    out.print(f"matrices (CSV, PNG) in {report_dir}")


@contextmanager
def _executor(name: str, settings: Any, pool: Any) -> Iterator[Any]:
    """None for the local executor; a started `RayExecutor` (shut down afterwards, its workers' pools as `pool`
    says, with `--cell-cpus` threads) for ray."""
    if name == "local":
        yield None
        return
    from harness.runner.ray_executor import RayExecutor

    with RayExecutor(settings, pool) as ex:
        yield ex


def _dry_run(grid: Any, settings: Any, results: Path, executor: str, ray_settings: Any, rate: float | None) -> None:
    """Print the grid's cells with their status and estimated cost; run nothing, load no model."""
    import os

    from rich.table import Table

    from harness.reports.render import count, seconds
    from harness.runner.plan import make_plan

    specs, data = list(grid.specs), grid.data
    if executor == "ray":
        per_cell = ray_settings.cell_cpus or 1
        parallel = ray_settings.max_parallel or max(1, (os.cpu_count() or 1) // per_cell)
    else:
        parallel = 1
    rows = {t: len(data.optimize_splits(t).dev) + 2 * len(data.optimize_splits(t).test[: settings.limit or None])
            for t in dict.fromkeys(s.task for s in specs)}
    plan = make_plan(specs, results, parallel=parallel, rate=rate, eval_rows=rows)
    table = Table(title=f"bench run --dry-run: {len(specs)} cells in {results}")
    for name in ("method", "task", "model"):
        table.add_column(name, overflow="fold")  # wrapped, never cut
    for name in ("seed", "status", "tokens (est.)", "time (est.)"):
        table.add_column(name, justify="right" if name != "status" else "left")
    for c in plan.cells:
        s = c.spec
        table.add_row(s.method, s.task, s.model, str(s.seed), c.status, count(c.tokens), seconds(c.seconds))
    print_table(table)
    todo = sum(1 for c in plan.cells if c.status != "finished")
    measured = sum(1 for c in plan.cells if c.measured and c.status != "finished")
    out.print(f"{todo} of {len(specs)} cells to run: ~{count(plan.tokens)} task-model tokens, {seconds(plan.seconds)} of "
              f"compute (optimization: {measured} of {todo} cells timed by finished cells of the same model, method, "
              f"preset and budget, the rest at {plan.rate:.0f} tok/s, {plan.rate_source}; evaluations: {plan.eval_source}); "
              f"wall time at {plan.parallel} at once ({executor}): {seconds(plan.wall_seconds)}", highlight=False)
    if plan.unmeasured_models:
        out.print(f"no finished cell of {', '.join(plan.unmeasured_models)} yet: its cells are priced at the other "
                  "models' speed, which a model of another size does not share (--rate sets it)", highlight=False)


def _methods(text: str) -> list[str]:
    from harness.core.methods import check_method, load_methods
    from harness.runner.cells import parse_list

    if text.strip() == "all":  # the reference first, then the method under study, then the rest by name
        first = {"zs-cot": 0, "greater": 1}
        return sorted((m for m in load_methods() if m not in REFERENCE_ONLY), key=lambda m: (first.get(m, 2), m))
    names = parse_list(text, "method")
    for name in names:  # did-you-mean before anything loads
        check_method(name)
    return names


def _save_plots(records: Any, board: Any, folder: Path) -> None:
    """The plots as PNG files in `folder`, with the anytime curves' numbers as anytime.csv."""
    from harness.core.io import atomic_write_text
    from harness.core.spec import safe_name
    from harness.reports import leaderboard as report
    from harness.reports import plots as P
    from harness.reports.curves import anytime, curves

    P.save(P.accuracy_bars(board), folder / "accuracy.png")
    P.save(P.cost_vs_accuracy(board), folder / "cost_vs_accuracy.png")
    P.save(P.pareto(board), folder / "pareto.png")
    any_time = anytime(records)
    atomic_write_text(folder / "anytime.csv", any_time.to_csv(index=False))
    for (preset, model, task), fig in P.anytime_plots(any_time).items():
        P.save(fig, folder / safe_name(f"anytime-{preset}-{model}-{task}.png"))
    c = curves(records)
    if not c.empty:
        P.save(P.optimization_curves(c), folder / "curves.png")
    for (preset, method), m in report.transfer_matrices(records).items():
        P.save(P.transfer_heatmap(m, report.matrix_title(preset, method, m, short=True)), folder / f"transfer-{preset}-{method}.png")


def _print_records(console: Any, records: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("method", "task", "model", "seed", "test %", "zs-cot %", "opt. wall", "prompt", title="cells")
    for r in records:
        if "error" in r:
            table.add_row(r["run_id"], "", "", "", "-", "-", "-", f"[red]{r['error']}[/red]")
            continue
        wall = r.get("cost", {}).get("wall_seconds", 0.0)
        table.add_row(
            r["method"], r["task"], r["model"], str(r["seed"]), f"{100 * r['test_accuracy']:.1f}",
            f"{100 * r['zero_shot_cot_test_accuracy']:.1f}", f"{wall:.0f} s", r["prompt"][:80],
        )
    print_table(table, console)


@friendly
def migrate_cmd(
    results: Annotated[Path, typer.Argument(help="The results folder whose run folders to rewrite (e.g. results).")],
    data_dir: DataDir = None,
) -> None:
    """Rewrite run folders written before typed run specs (spec version 1) once: typed fields, the data
    fingerprint, new run ids (folders renamed; transfer runs point at their sources' new ids)."""
    from harness.runner.migrate import migrate

    report = migrate(results, data_dir=data_dir)
    for old, new in report.renamed:
        out.print(f"{old} -> {new}", highlight=False)
    out.print(f"migrated {len(report.renamed)} run folder(s); {report.current} already current", highlight=False)
