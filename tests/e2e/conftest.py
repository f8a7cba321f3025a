"""Fixtures of the end-to-end tests: every process a test starts is stopped with it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.deployment import BIN
from tests.processes import Processes


@pytest.fixture
def processes(tmp_path: Path, tmc_cache: Path) -> Iterator[Processes]:
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "TMC_CACHE_DIR": str(tmc_cache),  # the ServerApp finds the pre-trained base here
        "FLWR_HOME": str(tmp_path / "credentials" / "flwr"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("TMC_ADMIN_TOKEN", None)
    group = Processes(log_dir=tmp_path / "logs", env=env)
    try:
        yield group
    finally:
        survivors = group.stop_all()
        assert not survivors, f"processes survived the test: {survivors}"
