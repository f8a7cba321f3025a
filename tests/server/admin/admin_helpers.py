"""Test data for the admin API tests (import as ``tests.server.admin.admin_helpers``):
a throw-away PKI, a populated registry, a snapshot of a registry's state, the tokens
of the tests' roles, and a TLS admin server on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from deploy.credentials import new_ca, pem_private_key, server_certificate
from tests.server.registry.registry_helpers import make_base, make_component
from tmc.server.admin import AdminClient, AdminServer, TLSFiles, serve
from tmc.server.registry import Registry


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_pki(directory: Path, name: str = "tmc test CA") -> Pki:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it, made by the
    deployment's own script (``deploy/credentials.py``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_ca(days=1, common_name=name)
    server_key, server_cert = server_certificate(
        common_name="localhost", hosts=("localhost", "127.0.0.1"), ca=ca, days=1
    )
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_cert.write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_key.write_bytes(pem_private_key(server_key))
    pki.server_key.chmod(0o600)
    return pki


def populate(root: Path, *, silos: int, per_silo: int) -> None:
    """A SQLite registry at ``root`` with ``per_silo`` components of silo-0 … silo-N and
    one committed version."""
    with Registry.create(root, base=make_base()) as registry:
        for s in range(silos):
            for i in range(per_silo):
                registry.add(make_component(f"silo-{s}", 100 * s + i, increment=i))
        registry.commit_version(reason="test setup")


def snapshot(root: Path) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    with Registry.open(root, actor="test") as registry:
        return {
            "components": [(r.id, r.status) for r in registry.list_components(status="all")],
            "versions": [(v.number, v.delta_sha256) for v in registry.versions()],
            "audit": [(e.seq, e.action, e.actor) for e in registry.audit_log()],
        }


SILOS = 6
PER_SILO = 2


@dataclass(frozen=True)
class Tokens:
    path: Path
    operator: str
    silo0: str
    silo1: str


@contextmanager
def serving(root: Path, tokens: Tokens, pki: Pki) -> Iterator[AdminServer]:
    """A TLS admin API for ``root`` on a free loopback port, stopped on exit."""
    handle = serve(
        root,
        credentials_path=tokens.path,
        host="127.0.0.1",
        port=0,
        tls=TLSFiles(pki.server_cert, pki.server_key),
    )
    try:
        yield handle
    finally:
        handle.stop(grace=1.0)


ClientFactory = Callable[..., AdminClient]
