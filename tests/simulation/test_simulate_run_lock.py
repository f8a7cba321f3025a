"""``tmc simulate`` on a registry another run holds is refused before Ray starts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.server.registry.run_lock_helpers import holder_process
from tmc.common.federation.config import FederationConfig
from tmc.server.registry import RegistryBusyError
from tmc.simulation.harness import simulate


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the simulation engine is not installed"
)
def test_simulate_is_refused_before_the_simulation_engine_starts(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    config = FederationConfig.from_run_config({"registry": str(root), "num-silos": 1})
    with holder_process(root) as holder, pytest.raises(RegistryBusyError, match=str(holder.pid)):
        simulate(config)
    assert not (root / "registry.db").exists()
