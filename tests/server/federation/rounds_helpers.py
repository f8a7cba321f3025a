"""Running the ServerApp's rounds on a :class:`FakeGrid` (import as
``tests.server.federation.rounds_helpers``)."""

from __future__ import annotations

from pathlib import Path

from tests.server.federation.fake_grid import FakeGrid, FakeNode, simulated_node
from tmc.client import make_client_app
from tmc.common.data import load_test_set
from tmc.common.federation.config import FederationConfig
from tmc.common.models import MaterializedBase
from tmc.server.federation import Federation
from tmc.server.registry import BaseRecord, Registry


def run_rounds(config: FederationConfig, grid: FakeGrid, base: MaterializedBase) -> Registry:
    data = config.data_spec()
    registry = Registry.open_or_create(
        config.registry_path,
        base=BaseRecord.from_materialized(base),
        weighting=config.weighting,
        max_norm=config.max_norm,
        theta0=base.theta0(),
        data=data,
    )
    test_set = load_test_set(config.dataset_spec(), data)
    federation = Federation(
        grid, config, registry, base, data=data, run_id=7, test_set=test_set, poll_interval=0.0
    )
    federation.run()
    return registry


def folder_silo_grid(config: FederationConfig, tmp_path: Path, silos: dict[str, Path]) -> FakeGrid:
    """One in-process node per silo, each reading its image folder (``silo-id``,
    ``data-path`` and a cache folder of its own in ``node_config``), in silo-name order."""
    app = make_client_app(config.to_run_config())
    grid = FakeGrid()
    for index, (name, data) in enumerate(sorted(silos.items())):
        node = simulated_node(2000 + index, index, len(silos), app)
        node.context.node_config.clear()
        node.context.node_config.update(
            {"silo-id": name, "data-path": str(data), "cache-dir": str(tmp_path / f"c-{name}")}
        )
        grid.nodes[node.node_id] = FakeNode(node.node_id, app, node.context)
    return grid
