"""``tmc nodes``: silo names where operators need node ids (against a fake Control API;
deploy/container-test.sh runs it against a real SuperLink)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flwr.proto.control_pb2 import ListNodesResponse, UnregisterNodeResponse
from flwr.proto.node_pb2 import NodeInfo
from typer.testing import CliRunner

from tmc.cli import app
from tmc.server.cli import nodes_cmds
from tmc.server.cli.nodes_cmds import NodesError, list_nodes, node_of


class FakeControl:
    def __init__(self, nodes: list[NodeInfo]) -> None:
        self.nodes = nodes
        self.unregistered: list[int] = []

    def ListNodes(self, request: Any) -> ListNodesResponse:
        return ListNodesResponse(nodes_info=self.nodes, now="2026-01-01T00:00:00+00:00")

    def UnregisterNode(self, request: Any) -> UnregisterNodeResponse:
        self.unregistered.append(request.node_id)
        return UnregisterNodeResponse()

    def close(self) -> None:
        pass


def _info(node_id: int, name: str, status: str, at: str = "2026-01-01T00:00:00+00:00") -> NodeInfo:
    return NodeInfo(node_id=node_id, name=name, status=status, registered_at=at)


NODES = [
    _info(11, "silo-1", "online"),
    _info(10, "silo-0", "online"),
    _info(12, "silo-2", "offline"),
    _info(9, "silo-2", "unregistered", "2025-01-01T00:00:00+00:00"),
]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeControl:
    control = FakeControl(list(NODES))

    @contextlib.contextmanager
    def client(connection: str | None) -> Iterator[FakeControl]:
        yield control

    monkeypatch.setattr(nodes_cmds, "control_client", client)
    return control


def test_names_and_ids(fake: FakeControl) -> None:
    nodes = list_nodes(fake)
    assert [(n.silo, n.node_id) for n in nodes] == [
        ("silo-0", 10),
        ("silo-1", 11),
        ("silo-2", 9),
        ("silo-2", 12),
    ]
    assert node_of(nodes, "silo-2").node_id == 12  # the unregistered key does not count


def test_refusals_say_why(fake: FakeControl) -> None:
    nodes = list_nodes(fake)
    with pytest.raises(NodesError, match=r"registered names: silo-0, silo-1, silo-2"):
        node_of(nodes, "silo-9")
    with pytest.raises(NodesError, match="already unregistered"):
        node_of([n for n in nodes if n.node_id == 9], "silo-2")
    twice = [*nodes, nodes[0].__class__(**{**nodes[0].__dict__, "node_id": 99})]
    with pytest.raises(NodesError, match=r"2 nodes are registered under 'silo-0' \(10, 99\)"):
        node_of(twice, "silo-0")


def test_cli_lists_and_unregisters_by_name(fake: FakeControl) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["nodes", "list", "tmc", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["nodes"]
    assert [(r["silo"], r["node_id"], r["status"]) for r in rows] == [
        ("silo-0", 10, "online"),
        ("silo-1", 11, "online"),
        ("silo-2", 12, "offline"),
    ]
    table = runner.invoke(app, ["nodes", "list", "--all"])
    assert table.exit_code == 0
    assert "silo-1" in table.stdout
    assert "unregistered" in table.stdout
    done = runner.invoke(app, ["nodes", "unregister", "--silo", "silo-1", "tmc", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"silo": "silo-1", "node_id": 11, "unregistered": True}
    assert fake.unregistered == [11]
    refused = runner.invoke(app, ["nodes", "unregister", "--silo", "nobody"])
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: no node is registered under the name 'nobody'")
    assert fake.unregistered == [11]


def test_no_configuration_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    refused = CliRunner().invoke(app, ["nodes", "list"])
    assert refused.exit_code == 2
    assert "no Flower configuration at" in refused.stderr
    assert not (tmp_path / "flwr").exists()  # Flower would have written a default one
    (tmp_path / "flwr").mkdir()
    (tmp_path / "flwr" / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
    )
    refused = CliRunner().invoke(app, ["nodes", "list"])
    assert refused.exit_code == 2
    assert "local simulation SuperLink" in refused.stderr
