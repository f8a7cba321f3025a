"""``tmc``: the command line of operators and silos (``tmc --help``).

The one place that joins both sides: the server's commands (``tmc.server.cli``), the
silo's group (``tmc.client.cli``) and the simulation commands (``tmc.simulation``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click
import typer
from typer.core import TyperGroup

from tmc.client.cli import silo_app
from tmc.common.errors import ConfigError
from tmc.common.logs import configure_logging, log_format, log_level
from tmc.server.cli import add_server_commands, dashboard, readmit
from tmc.server.cli.output import EXIT_USAGE, one_line, report_error
from tmc.simulation import demo, simulate_command


class _HelpFormatter(click.HelpFormatter):
    """Click's layout, without the backslash Typer puts before "[default: ...]" and
    "[required]" for rich's markup whenever rich is installed, even with rich help off."""

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        super().write_dl(
            [(term, text.replace("\\[", "[")) for term, text in rows], col_max, col_spacing
        )


class _HelpContext(click.Context):
    formatter_class = _HelpFormatter


def _use_help_context(command: click.Command) -> None:
    command.context_class = _HelpContext
    for sub in getattr(command, "commands", {}).values():
        _use_help_context(sub)


class _OneLineErrors(TyperGroup):
    """Usage errors (unknown option, missing value, bad choice) as one unwrapped line and
    exit status 2, or a JSON error object under ``--json``, like every other refusal;
    Typer would draw a multi-line panel."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        _use_help_context(self)
        try:
            result = super().main(
                args=argv,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except click.ClickException as exc:
            context = getattr(exc, "ctx", None)
            where = f" (see `{context.command_path} --help`)" if context is not None else ""
            message = one_line(exc.format_message()) + where
            report_error("UsageError", message, as_json="--json" in argv)
            result = EXIT_USAGE
        except click.exceptions.Abort:
            sys.stderr.write("aborted\n")
            result = 130
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="tmc",
    help=(
        "Federated continual learning with Tangent Model Composition: silos train "
        "independent tangent components, the server composes them exactly and can forget "
        "any silo's contribution on request."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's own help layout: it rewraps each paragraph to the terminal (80 columns and up)
    # and gives an option's text the width left of its name; rich's boxed panels broke
    # both mid-sentence at 80 columns. Every sub-group inherits this from the root.
    rich_markup_mode=None,
)
app.command("demo")(demo)
app.command("simulate")(simulate_command)
add_server_commands(app)
app.command("dashboard")(dashboard)
silo_app.command("readmit")(readmit)  # the server's side of `tmc silo` (see silo_cmds)
app.add_typer(silo_app, name="silo")


@app.callback()
def _root(
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="log more (-v: info, -vv: debug) on stderr; default: TMC_LOG_LEVEL or warning",
    ),
    log_format_option: str | None = typer.Option(
        None,
        "--log-format",
        help="text | json (one JSON object per line); default: TMC_LOG_FORMAT or text",
        show_default=False,
    ),
) -> None:
    explicit = [None, logging.INFO, logging.DEBUG][min(verbose, 2)]
    try:
        kind = log_format(log_format_option)
        level = log_level(explicit, default=logging.WARNING)
    except ConfigError as exc:
        report_error("ConfigError", str(exc), as_json="--json" in sys.argv)
        raise typer.Exit(EXIT_USAGE) from exc
    # Like logging.basicConfig: a process that set up its own logging (pytest) keeps it.
    if all(getattr(h, "tmc_handler", False) for h in logging.getLogger().handlers):
        configure_logging(kind, level, stream=sys.stderr)
    # Flower logs through its own handler; without this its DEBUG lines reach ours too.
    logging.getLogger("flwr").propagate = False


def main() -> None:
    app()


__all__ = ["app", "main"]
