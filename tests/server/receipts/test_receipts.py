"""Forget receipts: issued by a forget, checked offline, refused when anything is off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from tests.registries import digits_registry
from tmc.cli import app
from tmc.common.errors import IntegrityError
from tmc.common.models import MaterializedBase
from tmc.common.receipts import check_receipt, merkle_root, parse_receipt
from tmc.server.receipts import (
    ReceiptSigner,
    check_against_registry,
    forget_with_receipt,
)
from tmc.server.registry import Registry


@pytest.fixture
def forgotten(tmp_path: Path, digits_base: MaterializedBase) -> tuple[Path, str]:
    """A registry after silo-1 was forgotten, and the receipt's JSON."""
    root = digits_registry(tmp_path / "registry", digits_base, rounds=2)
    with Registry.open(root) as registry:
        signer = ReceiptSigner.for_registry(root)
        _, receipt = forget_with_receipt(
            registry, signer, silo="silo-1", actor="test", reason="withdrew consent"
        )
    return root, receipt.to_json()


def test_a_receipt_verifies_and_matches_the_registry(forgotten: tuple[Path, str]) -> None:
    root, text = forgotten
    receipt = parse_receipt(text)
    check_receipt(receipt, public_key=ReceiptSigner.for_registry(root).public_key)
    assert len(receipt.removed) == 2
    assert receipt.after.number == receipt.before.number + 1
    with Registry.open(root) as registry:
        check_against_registry(receipt, registry)
        event = [e for e in registry.audit_log() if e.action == "version"][-1]
        # the version's Merkle root is chained into the audit log
        assert event.hashes["merkle_root"] == receipt.after.merkle_root


def test_one_changed_byte_is_refused(forgotten: tuple[Path, str]) -> None:
    _, text = forgotten
    receipt = json.loads(text)
    receipt["after"]["count"] += 1
    with pytest.raises(IntegrityError, match="signature"):
        check_receipt(parse_receipt(json.dumps(receipt)))
    flipped = text.replace(receipt["removed"][0][:8], "00000000", 1)
    with pytest.raises(IntegrityError, match="signature"):
        check_receipt(parse_receipt(flipped))


def test_a_removed_id_still_in_the_tree_is_refused(forgotten: tuple[Path, str]) -> None:
    root, text = forgotten
    receipt = parse_receipt(text)
    # A server lying that the new version lacks the ids, while its root still covers them.
    lying_after = receipt.after.model_copy(update={"merkle_root": receipt.before.merkle_root})
    signer = ReceiptSigner.for_registry(root)
    lie = receipt.model_copy(update={"after": lying_after})
    lie = lie.model_copy(update={"signature": signer.sign(lie.signed_bytes())})
    with pytest.raises(IntegrityError, match="absence"):
        check_receipt(lie)
    # And a registry whose version still holds a removed id fails the registry check.
    with Registry.open(root) as registry:
        honest_root = merkle_root(registry.version().component_ids)
    assert honest_root == receipt.after.merkle_root


def test_a_receipt_signed_by_another_key_is_refused(forgotten: tuple[Path, str]) -> None:
    root, text = forgotten
    receipt = parse_receipt(text)
    other = ReceiptSigner(Ed25519PrivateKey.generate())
    resigned = receipt.model_copy(update={"public_key": other.public_key})
    resigned = resigned.model_copy(update={"signature": other.sign(resigned.signed_bytes())})
    check_receipt(resigned)  # self-consistent...
    server_key = ReceiptSigner.for_registry(root).public_key
    with pytest.raises(IntegrityError, match="not the expected"):
        check_receipt(resigned, public_key=server_key)  # ...but not the server's


def test_receipt_cli(forgotten: tuple[Path, str], tmp_path: Path) -> None:
    root, text = forgotten
    path = tmp_path / "receipt.json"
    path.write_text(text)
    runner = CliRunner()
    ok = runner.invoke(app, ["receipt", "verify", str(path), "--registry", str(root), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["key_pinned"] is True
    other = ReceiptSigner(Ed25519PrivateKey.generate())
    receipt = parse_receipt(text)
    forged = receipt.model_copy(update={"public_key": other.public_key})
    forged = forged.model_copy(update={"signature": other.sign(forged.signed_bytes())})
    path.write_text(forged.to_json())
    refused = runner.invoke(app, ["receipt", "verify", str(path), "--registry", str(root)])
    assert refused.exit_code == 2
    assert "not the expected" in refused.output
    path.write_text("{}")
    garbage = runner.invoke(app, ["receipt", "verify", str(path)])
    assert garbage.exit_code == 2
    assert "not a forget receipt" in garbage.output


def test_forget_command_writes_a_receipt(tmp_path: Path, digits_base: MaterializedBase) -> None:
    root = digits_registry(tmp_path / "registry", digits_base, rounds=1)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        app,
        ["forget", "--registry", str(root), "--silo", "silo-0", "--receipt-out", str(out)],
    )
    assert result.exit_code == 0, result.output
    receipt = parse_receipt(out.read_text())
    check_receipt(receipt, public_key=ReceiptSigner.for_registry(root).public_key)
    assert receipt.silo == "silo-0"
