"""Running the ServerApp's rounds on a :class:`FakeGrid` (import as
``tests.server.federation.rounds_helpers``)."""

from __future__ import annotations

from tests.server.federation.fake_grid import FakeGrid
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
