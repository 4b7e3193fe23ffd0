"""`bench export lm-eval` and the `--engine lm-eval` cross-check of `bench eval`: thin wrappers over harness.lmeval.

`register(app)` adds the `export` command group to the `bench` typer app (harness.cli calls it once, after its
own commands). `check_engine` and `cross_check` are what `bench eval --engine` calls before loading a model and
after its runs. harness.cli is imported inside the functions, so either module may be imported first.
"""

# No `from __future__ import annotations`: typer must evaluate the annotations of the commands defined in
# register() (DataDir comes from harness.cli) where they are defined.
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from harness.types import BenchError


def register(app: typer.Typer) -> None:
    from harness.cli import DataDir, friendly, out

    export_app = typer.Typer(help="Export a stored run for other tools.", no_args_is_help=True)

    @export_app.command("lm-eval")
    @friendly
    def export_lmeval_cmd(
        run: Annotated[Path, typer.Option("--run", help="A finished run folder (results/eval-... or results/optimize-...).")],
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="Where the tasks go (default: RUN/lmeval-export).")] = None,
        reasoning: Annotated[Optional[Path], typer.Option(help="An lm-eval samples file of the <name>_cot task: build the answer tasks from lm-eval's own reasoning.")] = None,
        name: Annotated[Optional[str], typer.Option(help="Task name prefix (default: gb_<task>_<run hash>).")] = None,
        data_dir: DataDir = None,
    ) -> None:
        """Write lm-eval tasks (YAML + JSON-lines data + README with the lm_eval commands) that put the run's
        prompt into every example exactly as the harness does: reasoning (<name>_cot), then the answer readings
        (<name>_options, <name>_greedy)."""
        from harness.lmeval import export_run

        export = export_run(run, out_dir, data_dir=data_dir, reasoning_file=reasoning, name=name)
        out.print(f"tasks {export.cot_task}, {', '.join(export.answer_tasks)} in {export.folder}")
        out.print(f"commands: {export.folder / 'README.md'}")

    app.add_typer(export_app, name="export")


def check_engine(engine: str, backend: str) -> None:
    """Fail before any model loads: an unknown engine, a backend lm-eval cannot mirror, lm-eval missing."""
    from harness.lmeval import ENGINES, LM_EVAL_BACKENDS, require_lm_eval

    if engine not in ENGINES:
        raise BenchError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "lm-eval":
        if backend not in LM_EVAL_BACKENDS:
            raise BenchError(f"--engine lm-eval needs --backend hf or vllm, not {backend!r}")
        require_lm_eval()


def cross_check(engine: str, run_dirs: list[Path], *, data_dir: Optional[Path], batch_size: int) -> None:
    """Re-score each run with lm-eval (when `engine` is lm-eval) and print lm-eval's numbers beside ours."""
    if engine != "lm-eval":
        return
    from rich.table import Table

    from harness.cli import err, out
    from harness.lmeval_check import cross_check_run

    for run_dir in run_dirs:
        err.print(f"lm-eval: {run_dir.name}", highlight=False)
        rec = cross_check_run(run_dir, data_dir=data_dir, batch_size=batch_size)
        out.print(_table(rec, Table))
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
