"""The admin API over TLS answers exactly what the local registry answers, forgets exactly,
and records who asked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.server.admin.admin_helpers import PER_SILO, SILOS, ClientFactory, Tokens, snapshot
from tests.server.registry.registry_helpers import make_component
from tmc.common.components import compose
from tmc.common.receipts import check_receipt, parse_receipt
from tmc.server.admin import AdminServer, PermissionDeniedError, revoke_token
from tmc.server.admin.errors import UnauthenticatedError
from tmc.server.receipts import registry_public_key
from tmc.server.registry import Registry, read_composition


def test_list_status_export_equal_the_local_registry(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    client = connect(tokens.operator)
    with Registry.open(root, actor="test") as local:
        assert client.list_components() == local.list_components()
        assert client.list_components(status="all") == local.list_components(status="all")
        assert client.list_components(silo="silo-3") == local.list_components(silo="silo-3")
        assert client.status() == local.status()
        assert client.silos() == local.silos()
        exported = client.export_bytes()
        assert exported == local.export_bytes()
        assert client.export_bytes(exclude_silos=["silo-2"]) == local.export_bytes(
            exclude_silos=["silo-2"]
        )
        assert client.audit_log() == local.audit_log()
        assert client.audit_log(since=3) == local.audit_log(3)
    assert len(client.list_components()) == SILOS * PER_SILO
    _, info = read_composition(exported)
    assert info["count"] == SILOS * PER_SILO


def test_export_to_a_file_is_private_and_audited(
    root: Path, tmp_path: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    out = tmp_path / "model.safetensors"
    sha = connect(tokens.operator).export(out)
    assert sha == hashlib.sha256(out.read_bytes()).hexdigest()
    assert out.stat().st_mode & 0o777 == 0o600
    with Registry.open(root, actor="test") as local:
        assert out.read_bytes() == local.export_bytes()
        exports = [e for e in local.audit_log() if e.action == "export"]
    assert exports[0].actor == "operator/ops"
    assert exports[0].hashes["export"] == sha


def test_export_streams_in_chunks(
    root: Path, tokens: Tokens, connect: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tmc.server.admin.service.CHUNK_BYTES", 100)
    with Registry.open(root, actor="test") as local:
        assert connect(tokens.operator).export_bytes() == local.export_bytes()


def test_operator_forgets_a_silo_exactly(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    client = connect(tokens.operator)
    before = client.list_components(silo="silo-2")
    result = client.forget(silo="silo-2", reason="withdrew consent")
    assert sorted(result.removed) == sorted(r.id for r in before)
    # The forget's signed receipt travels back and checks offline against the server's key.
    assert result.receipt is not None
    receipt = parse_receipt(result.receipt)
    check_receipt(receipt, public_key=registry_public_key(root))
    assert receipt.removed == sorted(result.removed)
    assert receipt.after.number == result.version.number
    kept = [
        make_component(f"silo-{s}", 100 * s + i, increment=i)
        for s in range(SILOS)
        for i in range(PER_SILO)
        if s != 2
    ]
    with Registry.open(root, actor="test") as local:
        assert result.version == local.current_version()
        assert local.composed_delta().equal(compose(kept))
        forgets = [e for e in local.audit_log() if e.action == "forget"]
        assert {e.component_id for e in forgets} == set(result.removed)
        assert {e.actor for e in forgets} == {"operator/ops"}
        assert {e.details["reason"] for e in forgets} == {"withdrew consent"}
        assert local.verify().ok
    # A repeat is a no-op: nothing removed, same version, no new audit event.
    state = snapshot(root)
    again = client.forget(silo="silo-2")
    assert again.removed == ()
    assert again.version == result.version
    assert snapshot(root) == state
    assert client.list_components(silo="silo-2") == []


def test_operator_forgets_one_component(root: Path, tokens: Tokens, connect: ClientFactory) -> None:
    client = connect(tokens.operator)
    target = client.list_components(silo="silo-4")[0]
    result = client.forget(component_id=target.id)
    assert result.removed == (target.id,)
    assert [r.id for r in client.list_components(silo="silo-4", status="forgotten")] == [target.id]


def test_silo_token_forgets_its_own_silo(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    silo0 = connect(tokens.silo0)
    mine = silo0.list_components()  # defaults to its own silo
    assert {r.silo for r in mine} == {"silo-0"}
    assert len(mine) == PER_SILO
    one = silo0.forget(component_id=mine[0].id, reason="mistake")
    assert one.removed == (mine[0].id,)
    rest = silo0.forget(silo="silo-0")
    assert rest.removed == (mine[1].id,)
    with Registry.open(root, actor="test") as local:
        forgets = [e for e in local.audit_log() if e.action == "forget"]
        assert [e.actor for e in forgets] == ["silo:silo-0/silo-0-key"] * 2
        assert local.verify().ok


@pytest.mark.parametrize(
    "call",
    [
        lambda c, other: c.forget(silo="silo-1"),
        lambda c, other: c.forget(component_id=other),
        lambda c, other: c.list_components(silo="silo-1"),
        lambda c, other: c.status(),
        lambda c, other: c.export_bytes(),
        lambda c, other: c.audit_log(),
    ],
    ids=["forget-silo", "forget-component", "list", "status", "export", "audit"],
)
def test_silo_token_is_denied_everything_else_and_nothing_changes(
    root: Path, tokens: Tokens, connect: ClientFactory, call: object
) -> None:
    other = connect(tokens.operator).list_components(silo="silo-1")[0].id
    before = snapshot(root)
    with pytest.raises(PermissionDeniedError, match="may not"):
        call(connect(tokens.silo0), other)  # type: ignore[operator]
    assert snapshot(root) == before  # same versions, same audit log: not a registry change


def test_revoked_token_is_refused_at_once(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    client = connect(tokens.silo1)
    assert client.list_components()
    revoke_token(tokens.path, "silo-1-key")
    before = snapshot(root)
    with pytest.raises(UnauthenticatedError, match="not recognised"):
        client.forget(silo="silo-1")
    assert snapshot(root) == before


def test_forget_through_the_api_is_seen_by_another_process_handle(
    root: Path, server: AdminServer, tokens: Tokens, connect: ClientFactory
) -> None:
    """The ServerApp holds its own handle on the registry: each side sees the other's
    changes at once."""
    client = connect(tokens.operator)
    with Registry.open(root, actor="server") as federation:
        federation.add(make_component("silo-new", 9999))
        federation.commit_version(reason="round 7")
        assert [r.silo for r in client.list_components(silo="silo-new")] == ["silo-new"]
        result = client.forget(silo="silo-new")
        assert federation.current_version() == result.version
        assert federation.list_components(silo="silo-new") == []
        assert federation.verify().ok
