"""``flwr run .`` works: Flower's own CLI submits the project's apps (from pyproject's
``[tool.flwr.app]``) to a SuperLink in simulation mode, with ``--run-config`` overrides."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.processes import Processes, free_port, wait_for_port
from tmc.server.registry import Registry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def test_flwr_run_dot_runs_the_federation(tmp_path: Path, tmc_cache: Path) -> None:
    port = free_port()
    flwr_home = tmp_path / "flwr-home"
    flwr_home.mkdir()
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    registry = tmp_path / "registry"
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(flwr_home),
        "TMC_CACHE_DIR": str(tmc_cache),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    }
    with Processes(tmp_path / "logs", env={**os.environ, **env}) as group:
        superlink = group.start(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--simulation",
                "--disable-runtime-dependency-installation",
                "--database",  # a file: the in-memory state failed under concurrent requests
                str(tmp_path / "state.db"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
        )
        wait_for_port("127.0.0.1", port, timeout=60, watch=[superlink])
        overrides = (
            f'registry="{registry}" num-silos=2 min-silos=2 rounds=1 increments=1 epochs=2 '
            "evaluate-federated=false"
        )
        status, output = group.run(
            "flwr-run",
            [
                str(BIN / "flwr"),
                "run",
                str(REPO),
                "test",
                "--run-config",
                overrides,
                "--federation-config",
                "num-supernodes=2",
                "--stream",
            ],
            timeout=400,
            check=False,
        )
        assert status == 0, output[-4000:]
        with Registry.open(registry) as opened:
            assert sorted(r.silo for r in opened.list_components()) == ["silo-0", "silo-1"]
            assert opened.current_version() is not None
            assert opened.verify().ok
    assert not group.stop_all()
