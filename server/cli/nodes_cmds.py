"""``tmc nodes``: the SuperNodes a SuperLink knows, by silo name (``tmc nodes --help``).

Operators think in silos; Flower's Control API thinks in node ids. ``flwr supernode list``
(Flower 1.42) prints id, owner and status but not the name a key was registered under
(``flwr supernode register KEY --name SILO``), although the SuperLink returns it
(``NodeInfo.name``, flwr/proto/node.proto). ``tmc nodes list`` shows it, and
``tmc nodes unregister --silo NAME`` finds the node of a silo and unregisters it, which is
what "Forgetting a silo" in docs/deployment.md needs. Both use the same Flower connection as
``flwr`` (``$FLWR_HOME/config.toml``; ``deploy/credentials.py`` writes one named ``tmc``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Protocol

import click
import typer

from tmc.server.cli.options import JsonOption
from tmc.server.cli.output import EXIT_USAGE, console, emit_json, one_line, report_error, table

nodes_app = typer.Typer(
    help="SuperNodes registered with the SuperLink, shown by silo name.", no_args_is_help=True
)

ConnectionArgument = Annotated[
    str | None,
    typer.Argument(help="Flower connection in $FLWR_HOME/config.toml (default: its default)"),
]


@dataclass(frozen=True)
class Node:
    """One SuperNode as the SuperLink reports it."""

    node_id: int
    silo: str  # the name its key was registered under ("" if none)
    status: str  # registered | online | offline | unregistered
    registered_at: str
    last_activated_at: str
    last_deactivated_at: str
    unregistered_at: str


class ControlClient(Protocol):
    """The part of Flower's ``ControlHttpClient`` used here."""

    def ListNodes(self, request: Any) -> Any: ...  # noqa: N802 - Flower's method name
    def UnregisterNode(self, request: Any) -> Any: ...  # noqa: N802

    def close(self) -> None: ...


class NodesError(Exception):
    """A request about nodes that cannot be carried out; nothing was changed."""


@contextlib.contextmanager
def control_client(connection: str | None) -> Iterator[ControlClient]:
    """Flower's Control API client for ``connection``, as ``flwr`` itself builds it (TLS
    root from the connection). Flower's messages ("Using SuperLink ...") go to stderr so
    that ``--json`` output stays one document."""
    from flwr.cli.constant import FLOWER_CONFIG_FILE
    from flwr.cli.flower_config import read_superlink_connection
    from flwr.cli.utils import init_http_client_from_connection
    from flwr.supercore.utils import get_flwr_home

    # Flower would write a default config and start a local simulation SuperLink in the
    # background (flwr/cli/local_superlink.py): never what an operator asking about a
    # deployment wants.
    config = get_flwr_home() / FLOWER_CONFIG_FILE
    if not config.is_file():
        raise NodesError(
            f"no Flower configuration at {config}: set FLWR_HOME to the folder that holds "
            "the deployment's connection (deploy/credentials.py writes OUT/flwr)"
        )
    settings = read_superlink_connection(connection)
    if str(settings.address).startswith(":local"):
        raise NodesError(
            f"connection {settings.name!r} is a local simulation SuperLink "
            f"({settings.address}), not a deployment: name the deployment's connection"
        )
    with contextlib.redirect_stdout(sys.stderr):
        client = init_http_client_from_connection(settings)
    try:
        yield client
    finally:
        client.close()


def list_nodes(client: ControlClient) -> list[Node]:
    from flwr.cli.utils import flwr_cli_exc_handler
    from flwr.proto.control_pb2 import ListNodesRequest

    with flwr_cli_exc_handler():
        reply = client.ListNodes(ListNodesRequest())
    nodes = [
        Node(
            node_id=int(info.node_id),
            silo=info.name,
            status=info.status,
            registered_at=info.registered_at,
            last_activated_at=info.last_activated_at,
            last_deactivated_at=info.last_deactivated_at,
            unregistered_at=info.unregistered_at,
        )
        for info in reply.nodes_info
    ]
    return sorted(nodes, key=lambda n: (n.silo, n.registered_at, n.node_id))


def node_of(nodes: list[Node], silo: str) -> Node:
    """The one node registered (and not unregistered) under ``silo``."""
    live = [n for n in nodes if n.silo == silo and n.status != "unregistered"]
    if not live:
        gone = [n for n in nodes if n.silo == silo]
        if gone:
            raise NodesError(f"silo {silo!r}'s node {gone[-1].node_id} is already unregistered")
        known = sorted({n.silo for n in nodes if n.silo}) or ["none"]
        raise NodesError(
            f"no node is registered under the name {silo!r} (registered names: "
            f"{', '.join(known)}); nothing was unregistered"
        )
    if len(live) > 1:
        ids = ", ".join(str(n.node_id) for n in live)
        raise NodesError(
            f"{len(live)} nodes are registered under {silo!r} ({ids}): unregister the right "
            "one by id with `flwr supernode unregister ID`; nothing was unregistered"
        )
    return live[0]


def unregister(client: ControlClient, node: Node) -> None:
    from flwr.cli.utils import flwr_cli_exc_handler
    from flwr.proto.control_pb2 import UnregisterNodeRequest

    with flwr_cli_exc_handler():
        client.UnregisterNode(UnregisterNodeRequest(node_id=node.node_id))


@contextlib.contextmanager
def _refusals(as_json: bool) -> Iterator[None]:
    """Flower's own errors (no connection, SuperLink unreachable, refused call) and ours as
    one line and exit status 2, like every other ``tmc`` refusal."""
    try:
        yield
    except (NodesError, click.ClickException) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        report_error(type(exc).__name__, one_line(message), as_json=as_json)
        raise typer.Exit(EXIT_USAGE) from exc


@nodes_app.command("list")
def list_command(
    connection: ConnectionArgument = None,
    every: Annotated[bool, typer.Option("--all", help="include unregistered nodes")] = False,
    as_json: JsonOption = False,
) -> None:
    """Node id, silo name, status and last change of every registered SuperNode."""
    with _refusals(as_json), control_client(connection) as client:
        nodes = [n for n in list_nodes(client) if every or n.status != "unregistered"]
    if as_json:
        emit_json({"nodes": [asdict(n) for n in nodes]})
        return
    rows = [
        (
            n.silo or "(no name)",
            n.node_id,
            n.status,
            n.unregistered_at
            or (n.last_activated_at if n.status == "online" else n.last_deactivated_at),
        )
        for n in nodes
    ]
    console.print(table("SuperNodes", ["silo", "node id", "status", "since"], rows))


@nodes_app.command("unregister")
def unregister_command(
    silo: Annotated[str, typer.Option(help="the silo whose node is unregistered")],
    connection: ConnectionArgument = None,
    as_json: JsonOption = False,
) -> None:
    """Unregister the node of SILO: the SuperLink refuses its key from then on, and a key
    cannot be registered again (a returning silo needs a new key). Forget the silo's
    components first (`tmc forget`): unregistering does not touch the registry."""
    with _refusals(as_json), control_client(connection) as client:
        node = node_of(list_nodes(client), silo)
        unregister(client, node)
    if as_json:
        emit_json({"silo": silo, "node_id": node.node_id, "unregistered": True})
    else:
        sys.stderr.write(f"unregistered silo {silo!r} (node {node.node_id})\n")


__all__ = ["Node", "NodesError", "list_nodes", "node_of", "nodes_app", "unregister"]
