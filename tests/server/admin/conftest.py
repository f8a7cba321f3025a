"""Admin API fixtures: a PKI, a registry with components, tokens, and a running TLS server
on a free loopback port (stopped after each test, whatever happens)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.admin.admin_helpers import (
    PER_SILO,
    SILOS,
    ClientFactory,
    Pki,
    Tokens,
    make_pki,
    populate,
    serving,
)
from tmc.server.admin import AdminClient, AdminServer, create_token


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-pki"), name="someone else's CA")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "registry"
    populate(path, silos=SILOS, per_silo=PER_SILO)
    return path


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    path = tmp_path / "admin-credentials.json"
    operator, _ = create_token(path, role="operator", label="ops")
    silo0, _ = create_token(path, role="silo:silo-0", label="silo-0-key")
    silo1, _ = create_token(path, role="silo:silo-1", label="silo-1-key")
    return Tokens(path, operator, silo0, silo1)


@pytest.fixture
def server(root: Path, tokens: Tokens, pki: Pki) -> Iterator[AdminServer]:
    with serving(root, tokens, pki) as handle:
        yield handle


@pytest.fixture
def connect(server: AdminServer, pki: Pki) -> Iterator[ClientFactory]:
    """``connect(token)``: a TLS client of the test server (closed after the test)."""
    clients: list[AdminClient] = []

    def factory(token: str, **kwargs: object) -> AdminClient:
        options: dict[str, object] = {"ca_cert": pki.ca_cert, "timeout_s": 30.0, **kwargs}
        client = AdminClient(f"127.0.0.1:{server.port}", token=token, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    try:
        yield factory
    finally:
        for client in clients:
            client.close()
