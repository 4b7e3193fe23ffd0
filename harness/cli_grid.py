"""`bench run`, `bench leaderboard` and `bench transfer`: thin wrappers over harness.grid, report and transfer.

`register(app)` adds the commands to the `bench` typer app (harness.cli calls it once, after its own
commands). harness.cli is imported inside `register`, so either module may be imported first.
"""

# No `from __future__ import annotations`: the commands are defined inside register() and typer must
# evaluate their annotations (DataDir comes from harness.cli) where they are defined.
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from harness.types import READINGS, BenchError, PromptPosition

FORMATS = ("md", "csv", "html")


def register(app: typer.Typer) -> None:
    from harness.cli import Backend, BatchSize, DataDir, Device, Threads, err, friendly, out

    @app.command("run")
    @friendly
    def run_cmd(
        methods: Annotated[str, typer.Option(help="Comma-separated methods (`bench methods`), or 'all'.")] = "all",
        tasks: Annotated[str, typer.Option(help="Comma-separated tasks or groups (`bench tasks`).")] = "bbh:navigate",
        models: Annotated[str, typer.Option(help="Comma-separated task models: aliases, local folders or hub ids.")] = "smollm2-135m",
        seeds: Annotated[str, typer.Option(help="Root seeds: 0,1,2 or 0-2.")] = "0",
        preset: Annotated[str, typer.Option(help="Method sizes: paper (GPU scale), cpu or smoke.")] = "cpu",
        position: Annotated[Optional[PromptPosition], typer.Option(help="Where the prompt goes, the same for every method (default: the preset's; cpu: before).")] = None,
        max_new_tokens: Annotated[int | None, typer.Option(help="Reasoning length of the dev/test evaluation (default: paper 1024, cpu 256, smoke 32).")] = None,
        limit: Annotated[int | None, typer.Option(help="Evaluate final prompts on the first N test rows only.")] = None,
        reading: Annotated[str | None, typer.Option(help="Primary answer reading (default: options for closed sets, else greedy).")] = None,
        budget_tokens: Annotated[int | None, typer.Option("--budget", help="Common budget per cell: task-model tokens (in + out).")] = None,
        optimizer_model: Annotated[str | None, typer.Option(help="Optimizer LLM of text-based methods (default: each cell's task model).")] = None,
        optimizer_backend: Annotated[str, typer.Option(help="hf, or openai for an OpenAI-compatible server (with --base-url).")] = "hf",
        base_url: Annotated[str | None, typer.Option(help="URL of the optimizer LLM's OpenAI-compatible server.")] = None,
        backend: Backend = "auto",
        dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = "float32",
        device: Device = None,
        threads: Threads = None,
        batch_size: BatchSize = 8,
        cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Use the shared response cache.")] = True,
        keep_going: Annotated[bool, typer.Option("--keep-going", help="Record a failing cell's error and go on with the next.")] = False,
        isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="Run each model's cells in its own child process, or in this one (default: auto, a child for backends such as vllm that own their process).")] = None,
        out_dir: Annotated[Path, typer.Option("--out", help="Where run folders go.")] = Path("results"),
        data_dir: DataDir = None,
    ) -> None:
        """Run every (method, task, model, seed) cell: optimize, then score on dev and test. Re-running the same
        command skips finished cells and resumes unfinished ones from their last completed step."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from harness.grid import Cell, GridSettings, parse_list, parse_seeds, run_grid
        from harness.pool import ModelPool
        from harness.progress import GridStatus

        if reading is not None and reading not in READINGS:
            raise BenchError(f"unknown reading {reading!r}: use one of {', '.join(READINGS)}")
        settings = GridSettings(
            preset=preset, position=position, max_new_tokens=max_new_tokens, limit=limit, reading=reading, dtype=dtype,
            budget_tokens=budget_tokens, optimizer_model=optimizer_model, optimizer_backend=optimizer_backend,
            base_url=base_url, backend=backend,
        )
        pool = ModelPool(cache=cache, threads=threads, batch_size=batch_size, device=device)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
        with Progress(*columns, console=err, transient=False) as bar:
            job = bar.add_task("cells", total=None, info="")

            def on_status(s: GridStatus) -> None:
                info = s.line()
                desc = f"[bold]{s.cell}[/bold]" if s.event == "start" else "cells"
                bar.update(job, total=s.total, completed=s.done + s.failed, description=desc, info=info)
                if s.event == "skip":
                    bar.console.print(f"[dim]finished already:[/dim] {s.cell}", highlight=False)
                elif s.event == "fail":
                    bar.console.print(f"[red]failed:[/red] {s.cell}: {s.error}", highlight=False)

            def progress(cell: Cell, msg: str) -> None:
                bar.console.print(f"[dim]{cell.method} {cell.task} s{cell.seed}[/dim] {msg}", highlight=False)

            records = run_grid(
                _methods(methods), tasks, parse_list(models, "model"), parse_seeds(seeds), preset, settings=settings,
                data_dir=data_dir, out=out_dir, pool=pool, on_status=on_status, progress=progress, keep_going=keep_going,
                isolate=isolate,
            )
        _print_records(out, records)
        out.print(f"run folders in {out_dir}; the table: bench leaderboard --results {out_dir}")

    @app.command("leaderboard")
    @friendly
    def leaderboard_cmd(
        results: Annotated[Path, typer.Option(help="Folder of run folders.")] = Path("results"),
        format: Annotated[str, typer.Option("--format", help="md (README), csv (analysis) or html (a self-contained page).")] = "md",
        output: Annotated[Path | None, typer.Option(help="Write here (default: stdout; html: RESULTS/leaderboard.html).")] = None,
        plots: Annotated[Path | None, typer.Option(help="Also save the plots as PNG files in this folder.")] = None,
    ) -> None:
        """Build the comparison table from the stored records (it is regenerated, never edited)."""
        from harness import render, report
        from harness.records import atomic_write_text

        if format not in FORMATS:
            raise BenchError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
        records = report.load_records(results)
        if not records:
            raise BenchError(f"no finished runs in {results}: run `bench run` first")
        board = report.leaderboard(records)
        if format == "md":
            text = render.to_markdown(board, report.transfer_matrices(records), report.transfer_leaderboard(records))
        elif format == "csv":
            text = render.to_csv(board)
        else:
            text = render.page(records)
            output = output or results / "leaderboard.html"
        if plots is not None:
            _save_plots(records, board, plots)
            err.print(f"plots in {plots}")
        if output is None:
            typer.echo(text, nl=False)
        else:
            atomic_write_text(output, text)
            err.print(f"wrote {output}")

    @app.command("transfer")
    @friendly
    def transfer_cmd(
        eval_models: Annotated[str, typer.Option(help="Comma-separated models to score every stored prompt on.")],
        results: Annotated[Path, typer.Option(help="Folder of run folders (the transfer runs are stored there too).")] = Path("results"),
        methods: Annotated[str | None, typer.Option(help="Only these methods (comma-separated).")] = None,
        tasks: Annotated[str | None, typer.Option(help="Only these tasks (comma-separated).")] = None,
        source_models: Annotated[str | None, typer.Option(help="Only prompts optimized on these models.")] = None,
        output: Annotated[Path | None, typer.Option(help="Where the matrices go (default: RESULTS/transfer).")] = None,
        cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Use the shared response cache.")] = True,
        isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="Evaluate each model in its own child process, or in this one (default: auto, a child for backends such as vllm that own their process).")] = None,
        backend: Annotated[Optional[str], typer.Option(help="Decode the transfer evaluations with this backend (hf, vllm, auto) instead of each source run's own.")] = None,
        device: Device = None,
        threads: Threads = None,
        batch_size: BatchSize = 8,
        data_dir: DataDir = None,
    ) -> None:
        """Score every stored optimized prompt on every listed model; write the source x target matrix of each
        method (CSV and heatmap PNG). Each model is loaded once; re-running skips finished evaluations."""
        from rich.table import Table

        from harness.grid import parse_list
        from harness.render import pct
        from harness.report import matrix_title
        from harness.transfer import run_transfer

        def progress(target: str, done: int, total: int) -> None:
            err.print(f"[dim]{target}[/dim] {done}/{total} prompts", highlight=False)

        report_dir = output or results / "transfer"
        matrices = run_transfer(
            results, parse_list(eval_models, "model"),
            methods=parse_list(methods, "method") if methods else None, tasks=parse_list(tasks, "task") if tasks else None,
            source_models=parse_list(source_models, "model") if source_models else None, data_dir=data_dir,
            cache=cache, progress=progress, report_dir=report_dir, isolate=isolate, backend=backend,
            pool={"threads": threads, "batch_size": batch_size, "device": device},
        )
        for (preset, method), m in matrices.items():
            table = Table("optimized on \\ evaluated on", *map(str, m.columns), title=matrix_title(preset, method, m))
            for src, row in m.iterrows():
                table.add_row(str(src), *(pct(v) for v in row))
            out.print(table)
        if not matrices:
            out.print("no transfer pairs: every prompt was optimized on the evaluation models themselves")
        out.print(f"matrices (CSV, PNG) in {report_dir}")


def _methods(text: str) -> list[str]:
    from harness.grid import parse_list
    from harness.methods import METHOD_MODULES, load_methods

    if text.strip() == "all":
        registered = load_methods()
        return [m for m in METHOD_MODULES if m in registered]
    return parse_list(text, "method")


def _save_plots(records: Any, board: Any, folder: Path) -> None:
    from harness import plots as P
    from harness import report

    P.save(P.accuracy_bars(board), folder / "accuracy.png")
    P.save(P.cost_vs_accuracy(board), folder / "cost_vs_accuracy.png")
    c = report.curves(records)
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
    console.print(table)
