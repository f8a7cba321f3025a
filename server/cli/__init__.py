"""The server side's commands: the registry, forgetting, composing, exporting, evaluating,
the admin API, the inference service (``tmc serve``), the dashboard, the SuperLink's nodes
and the operator's side of ``tmc silo``.

The root ``tmc`` command (``tmc.cli``) joins them with the silo's group (``tmc.client.cli``)
and the simulation commands (``tmc.simulation``); this package never imports the client.
"""

from __future__ import annotations

import typer

from tmc.server.cli.admin_cmds import admin_app
from tmc.server.cli.dashboard_cmds import dashboard
from tmc.server.cli.data_cmds import data_app
from tmc.server.cli.model_cmds import compose, evaluate_command, export, forget, predict
from tmc.server.cli.nodes_cmds import nodes_app
from tmc.server.cli.receipt_cmds import receipt_app
from tmc.server.cli.registry_cmds import registry_app
from tmc.server.cli.serve_cmd import serve
from tmc.server.cli.silo_cmds import readmit
from tmc.server.cli.value_cmds import value


def add_server_commands(app: typer.Typer) -> None:
    """Register the server side's top-level commands and groups on the root ``app``."""
    app.command("forget")(forget)
    app.command("compose")(compose)
    app.command("export")(export)
    app.command("evaluate")(evaluate_command)
    app.command("predict")(predict)
    registry_app.command("value")(value)
    app.command("serve")(serve)
    app.add_typer(registry_app, name="registry")
    app.add_typer(data_app, name="data")
    app.add_typer(admin_app, name="admin")
    app.add_typer(nodes_app, name="nodes")
    app.add_typer(receipt_app, name="receipt")


__all__ = ["add_server_commands", "dashboard", "readmit"]
