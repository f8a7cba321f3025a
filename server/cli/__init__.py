"""``tmc``: the command line of operators and silos (``tmc --help``)."""

from __future__ import annotations

import logging

import typer

from client.cli import silo_app
from server.cli.admin_cmds import admin_app
from server.cli.data_cmds import data_app
from server.cli.demo import demo
from server.cli.model_cmds import compose, evaluate_command, export, forget, predict
from server.cli.registry_cmds import registry_app
from server.cli.simulate import simulate_command

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
app.command("simulate")(simulate_command)
app.command("forget")(forget)
app.command("compose")(compose)
app.command("export")(export)
app.command("evaluate")(evaluate_command)
app.command("predict")(predict)
app.add_typer(registry_app, name="registry")
app.add_typer(data_app, name="data")
app.add_typer(silo_app, name="silo")
app.add_typer(admin_app, name="admin")


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="log more (-v: info, -vv: debug) on stderr"
    ),
) -> None:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Flower logs through its own handler; without this its DEBUG lines reach ours too.
    logging.getLogger("flwr").propagate = False


def main() -> None:
    app()


__all__ = ["app", "main"]
