"""Issuing a forget receipt from the registry's versions before and after a forget."""

from __future__ import annotations

from tmc.common.receipts import (
    ForgetReceipt,
    VersionCommitment,
    absence_proof,
    merkle_root,
)
from tmc.server.receipts.signing import ReceiptSigner
from tmc.server.registry import ModelVersion, Registry
from tmc.server.registry.entities import ForgetResult, utc_now


def commitment(version: ModelVersion | None) -> VersionCommitment:
    if version is None:
        return VersionCommitment(number=0, count=0, merkle_root=merkle_root([]))
    return VersionCommitment(
        number=version.number,
        count=version.count,
        merkle_root=merkle_root(version.component_ids),
        delta_sha256=version.delta_sha256,
    )


def issue_receipt(
    registry: Registry,
    before: ModelVersion | None,
    result: ForgetResult,
    signer: ReceiptSigner,
    *,
    silo: str | None,
    reason: str,
) -> ForgetReceipt:
    """The signed receipt of ``result``: ``before`` is the version current before it."""
    after = result.version
    receipt = ForgetReceipt(
        base_sha256=registry.base.sha256,
        issued_at=utc_now(),
        silo=silo,
        reason=reason,
        before=commitment(before),
        after=commitment(after),
        removed=sorted(result.removed),
        proofs=[absence_proof(after.component_ids, cid) for cid in sorted(result.removed)],
        public_key=signer.public_key,
    )
    return receipt.model_copy(update={"signature": signer.sign(receipt.signed_bytes())})


def forget_with_receipt(
    registry: Registry,
    signer: ReceiptSigner,
    *,
    silo: str | None = None,
    component_id: str | None = None,
    actor: str,
    reason: str = "",
) -> tuple[ForgetResult, ForgetReceipt]:
    """Forget, then sign what changed. The forget is the registry's (exact, audited); the
    receipt restates its versions, so it adds no trust the registry's audit lacks."""
    before = registry.current_version()
    result = registry.forget(silo=silo, component_id=component_id, actor=actor, reason=reason)
    receipt = issue_receipt(registry, before, result, signer, silo=silo, reason=reason)
    return result, receipt


__all__ = ["commitment", "forget_with_receipt", "issue_receipt"]
