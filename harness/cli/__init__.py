"""`bench`: the command line. Thin: each command parses options, checks them, builds specs and calls the library.

The commands live in `commands` (tasks, models, methods, eval, optimize), `grid` (run, leaderboard, transfer,
migrate) and `export` (export lm-eval); the options they share in `options`. This module only assembles them.
"""

from __future__ import annotations

import sys

import typer

from harness.cli import commands, export, grid, options

app = typer.Typer(
    help="greater-bench: benchmark prompt optimizers (GReaTer, APE, OPRO, ProTeGi, TextGrad, PE2, EvoPrompt) on reasoning tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: it wraps descriptions and never cuts an option's name
)


@app.callback()
def _every_command() -> None:
    options.quiet_progress_bars()  # in a log, only the harness's own progress lines


app.command("tasks")(commands.tasks_cmd)
app.command("models")(commands.models_cmd)
app.command("methods")(commands.methods_cmd)
app.command("eval")(commands.eval_cmd)
app.command("optimize")(commands.optimize_cmd)
app.command("run")(grid.run_cmd)
app.command("leaderboard")(grid.leaderboard_cmd)
app.command("transfer")(grid.transfer_cmd)
app.command("migrate")(grid.migrate_cmd)
app.add_typer(export.export_app, name="export")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
