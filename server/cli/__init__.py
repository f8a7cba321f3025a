"""``tmc``: the command line of operators and silos (``tmc --help``)."""

from __future__ import annotations

import logging

import typer

from server.cli.demo import demo

app = typer.Typer(
    name="tmc",
    help=(
        "Federated continual learning with Tangent Model Composition: silos train "
        "independent tangent components, the server composes them exactly and can forget "
        "any silo's contribution on request."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo)


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="log more (-v: info, -vv: debug) on stderr"
    ),
) -> None:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    app()


__all__ = ["app", "main"]
