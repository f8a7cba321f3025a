"""Fixtures for the ServerApp tests: Flower's task identity, a config, the fake grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flwr.supercore.task_identity import TaskIdentity

from tests.server.federation.fake_grid import FakeGrid, simulated_node
from tmc.client import make_client_app
from tmc.common.federation.config import FederationConfig


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # Messages built outside a Flower runtime need the identity a runtime would set.
    for attribute, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attribute, value)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., FederationConfig]:
    def build(**overrides: object) -> FederationConfig:
        values: dict[str, object] = {
            "registry": str(tmp_path / "registry"),
            "num-silos": 3,
            "increments": 3,
            "rounds": 2,
            "epochs": 2,
            "wait-seconds": 1.0,
            "hello-timeout": 5.0,
            "round-timeout": 5.0,
        }
        values.update({k.replace("_", "-"): v for k, v in overrides.items()})
        return FederationConfig.from_run_config(values)

    return build


@pytest.fixture
def make_grid(tmp_path: Path) -> Callable[..., FakeGrid]:
    def build(config: FederationConfig, nodes: int | None = None, **kwargs: object) -> FakeGrid:
        app = make_client_app(config.to_run_config())
        grid = FakeGrid(**kwargs)  # type: ignore[arg-type]
        count = nodes or config.num_silos
        for partition in range(count):
            node = simulated_node(1000 + partition, partition, count, app)
            node.context.node_config["cache-dir"] = str(tmp_path / f"node-{partition}")
            grid.nodes[node.node_id] = node
        return grid

    return build
