"""Serve fixtures: a digits registry (three class silos), an operator token, and a serve
app over them in FastAPI's TestClient (its lifespan starts and stops the follower)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.registries import digits_registry
from tests.server.serving.serving_helpers import Served, settings_for
from tmc.common.models import MaterializedBase
from tmc.server.admin.auth import create_token
from tmc.server.serving import ServingMetrics, create_app


@pytest.fixture
def registry(tmp_path: Path, digits_base: MaterializedBase) -> Path:
    """Versions 1 (three components, one per silo) and 2 (six)."""
    return digits_registry(tmp_path / "registry", digits_base, rounds=2)


@pytest.fixture
def credentials(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "credentials.json"
    token, _ = create_token(path, role="operator", label="ops")
    return path, token


def _serve(registry: Path, credentials: Path, token: str) -> Iterator[Served]:
    metrics = ServingMetrics()
    app = create_app(settings_for(registry, credentials, max_batch=8), metrics=metrics)
    with TestClient(app) as client:
        yield Served(registry, credentials, token, client, metrics)


@pytest.fixture
def served(registry: Path, credentials: tuple[Path, str]) -> Iterator[Served]:
    """A serve app of its own: the test may change the registry."""
    yield from _serve(registry, *credentials)


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, digits_base: MaterializedBase
) -> Iterator[Served]:
    """One serve app for a module whose tests change nothing (they check that)."""
    root = tmp_path_factory.mktemp("serve")
    registry = digits_registry(root / "registry", digits_base, rounds=2)
    token, _ = create_token(root / "credentials.json", role="operator", label="ops")
    yield from _serve(registry, root / "credentials.json", token)
