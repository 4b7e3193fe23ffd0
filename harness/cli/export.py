"""`bench export lm-eval` and the `--engine lm-eval` cross-check of `bench eval`: thin wrappers over harness.lmeval.

`check_engine` and `cross_check` are what `bench eval --engine` calls before loading a model and after its runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from harness.cli.options import DataDir, Results, err, friendly, out, print_table
from harness.core.types import BenchError

export_app = typer.Typer(help="Export a stored run for other tools.", no_args_is_help=True)

@export_app.command("lm-eval")
@friendly
def export_lmeval_cmd(
    run: Annotated[Path, typer.Option("--run", help="A finished run folder (results/eval-... or results/optimize-...).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where the tasks go (default: RUN/lmeval-export).")] = None,
    reasoning: Annotated[
        Path | None,
        typer.Option(help="An lm-eval samples file of the <name>_cot task: build the answer tasks from lm-eval's own reasoning."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Task name prefix (default: gb_<task>_<run hash>).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Write lm-eval tasks (YAML + JSON-lines data + README with the lm_eval commands) that put the run's
    prompt into every example exactly as the harness does: reasoning (<name>_cot), then the answer readings
    (<name>_options, <name>_greedy)."""
    from harness.lmeval.export import export_run

    export = export_run(run, out_dir, data_dir=data_dir, reasoning_file=reasoning, name=name)
    out.print(f"tasks {export.cot_task}, {', '.join(export.answer_tasks)} in {export.folder}")
    out.print(f"commands: {export.folder / 'README.md'}")



EvalEngine = Literal["harness", "lm-eval"]  # `bench eval --engine`: the harness alone, or also lm-eval to compare


def check_engine(engine: str, backend: str) -> None:
    """Fail before any model loads: a backend lm-eval cannot mirror, lm-eval missing (the engine's name is a
    choice of `bench eval --engine`)."""
    from harness.lmeval.export import LM_EVAL_BACKENDS, require_lm_eval

    if engine == "lm-eval":
        if backend not in LM_EVAL_BACKENDS:
            raise BenchError(f"--engine lm-eval needs --backend hf or vllm, not {backend!r}")
        require_lm_eval()


def cross_check(engine: str, run_dirs: list[Path], *, data_dir: Path | None, batch_size: int) -> None:
    """Re-score each run with lm-eval (when `engine` is lm-eval) and print lm-eval's numbers beside ours."""
    if engine != "lm-eval":
        return
    from rich.table import Table

    from harness.lmeval.check import cross_check_run

    for run_dir in run_dirs:
        err.print(f"lm-eval: {run_dir.name}", highlight=False)
        rec = cross_check_run(run_dir, data_dir=data_dir, batch_size=batch_size)
        print_table(_table(rec, Table))
        out.print(f"lm-eval record: {run_dir / 'lmeval.json'}")


def _table(rec: dict[str, Any], table_cls: Any) -> Any:
    r, a = rec["reasoning"], rec["answer_text"]
    title = (f"{rec['task']}: harness vs lm-eval {rec['lm_eval_version']} (n={rec['n']}); identical reasoning "
             f"{r['identical']}/{r['n']}, identical text after the extractor {a['identical']}/{a['n']}")
    table = table_cls("reading", "harness [95% CI]", "lm-eval", "agreement", "within CI", "differing ids", title=title)
    for name, v in rec["readings"].items():
        lo, hi = v["harness_ci95"]
        ids = ", ".join(v["differ"][:6]) + (" ..." if len(v["differ"]) > 6 else "")
        table.add_row(name, f"{100 * v['harness']:.1f} [{100 * lo:.0f}-{100 * hi:.0f}]", f"{100 * v['lm_eval']:.1f}",
                      f"{100 * v['agreement']:.0f}%", "yes" if v["within_harness_ci"] else "NO", ids or "-")
    return table


def _leaderboard_md(results: Path, data_dir: Path | None) -> str:
    """The leaderboard as `bench leaderboard --format md` writes it (leakage from the data where it is found)."""
    from harness.reports import leaderboard as report
    from harness.reports import render
    from harness.reports.loading import load_records, with_leakage
    from harness.runner.data import RunData

    records = with_leakage(load_records(results), RunData(data_dir))
    return render.to_markdown(report.leaderboard(records), report.transfer_matrices(records), report.transfer_leaderboard(records))


@export_app.command("mlflow")
@friendly
def export_mlflow_cmd(
    results: Results = None,  # type: ignore[assignment]
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: the local file store ./mlruns).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "greater-bench",
    data_dir: DataDir = None,
) -> None:
    """Log every finished run folder as an MLflow run: params from spec.json, metrics from summary.json, the
    anytime curve as step metrics (step = cumulative tokens), prompt and leaderboard as artifacts. Runs already in
    the experiment are skipped. Needs the mlflow extra."""
    from harness.cli.options import default_results
    from harness.reports.mlflow_export import export_mlflow, import_mlflow
    from harness.reports.mlflow_export import tracking_uri as resolve_uri

    results = results or default_results()
    import_mlflow()  # the install hint before anything is read
    done = export_mlflow(results, uri=tracking_uri, experiment=experiment, leaderboard_md=_leaderboard_md(results, data_dir))
    out.print(f"logged {len(done['logged'])} run(s), {len(done['skipped'])} already there; experiment {experiment!r} "
              f"at {resolve_uri(tracking_uri)} (browse: mlflow ui --backend-store-uri {resolve_uri(tracking_uri)})",
              highlight=False, soft_wrap=True)


@export_app.command("card")
@friendly
def export_card_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the card goes (README.md and data/*.parquet).")],
    results: Annotated[Path | None, typer.Option(  # here --out names the card, not the results (as elsewhere)
        "--results", help="The results folder (default: BENCH_RESULTS or bench-results).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Write the results as a Hugging Face dataset card: README with the leaderboard and the exact commands,
    parquet tables of runs and predictions. Nothing is uploaded (README: the one upload line)."""
    from harness.cli.options import default_results
    from harness.reports.card import UPLOAD, export_card

    results = results or default_results()
    readme = export_card(results, out_dir, leaderboard_md=_leaderboard_md(results, data_dir))
    out.print(f"card: {readme}; upload: {UPLOAD.format(out=out_dir)}", highlight=False, soft_wrap=True)
