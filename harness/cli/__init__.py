"""`bench`: the command line. Thin: each command parses options, checks them, builds specs and calls the library.

The commands live in `commands` (tasks, models, methods, eval, optimize), `grid` (run, leaderboard, transfer,
migrate) and `export` (export lm-eval); the options they share in `options`. This module only assembles them.
"""

from __future__ import annotations

import re
import sys

import typer
from typer.core import TyperGroup

from harness.cli import commands, export, grid, options
from harness.core.text import did_you_mean

_NOT_ONE_OF = re.compile(r"(?:Value error, )?(?P<value>'.*') is not one of (?P<choices>'.*')\.$")


def choice_message(message: str) -> str:
    """A typer choice's refusal ("Value error, 'vlm' is not one of 'hf', 'vllm', ...") without pydantic's
    prefix and with the closest allowed value; any other message as it is."""
    m = _NOT_ONE_OF.search(message)
    if m is None:
        return message
    value, choices = m["value"][1:-1], re.findall(r"'([^']*)'", m["choices"])
    return f"{message[: m.start()]}{m['value']} is not one of {m['choices']}{did_you_mean(value, choices, suffix='') or '.'}"


class _Commands(TyperGroup):
    """The `bench` group: click's usage errors as they are, a choice's with a did-you-mean."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as e:
            e.message = choice_message(e.message)
            raise


app = typer.Typer(
    cls=_Commands,
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
