"""A forget receipt: what the server signs when it removes a silo's contribution.

It names the version before and after (number, Merkle root over component ids, Δ hash),
the removed component ids with a proof that none of them is a leaf of the new version's tree,
and is signed with the server's Ed25519 key over its canonical JSON (sorted keys, no
whitespace, the signature field left out). Anyone holding it can check it offline.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, ValidationError

from tmc.common.errors import IntegrityError
from tmc.common.receipts.merkle import AbsenceProof, check_absence
from tmc.common.schema import StrictModel

FORMAT: Literal["tmc-forget-receipt/1"] = "tmc-forget-receipt/1"
HEX64 = r"^[0-9a-f]{64}$"


class VersionCommitment(StrictModel):
    number: int = Field(ge=0, description="0: no version yet")
    count: int = Field(ge=0)
    merkle_root: str = Field(pattern=HEX64, description="over the sorted component ids")
    delta_sha256: str | None = Field(None, pattern=HEX64)


class ForgetReceipt(StrictModel):
    format: Literal["tmc-forget-receipt/1"] = FORMAT
    base_sha256: str = Field(pattern=HEX64, description="θ0 of the federation")
    issued_at: datetime
    silo: str | None = Field(None, max_length=256)
    reason: str = Field("", max_length=2000)
    before: VersionCommitment
    after: VersionCommitment
    removed: list[str] = Field(max_length=100_000)
    proofs: list[AbsenceProof] = Field(max_length=100_000)
    public_key: str = Field(pattern=HEX64, description="the server's Ed25519 key (raw, hex)")
    signature: str = Field("", pattern=r"^([0-9a-f]{128})?$")

    def signed_bytes(self) -> bytes:
        payload = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def parse_receipt(text: str | bytes) -> ForgetReceipt:
    try:
        return ForgetReceipt.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "receipt"
        raise IntegrityError(f"not a forget receipt: {where}: {first['msg']}") from None


def check_receipt(receipt: ForgetReceipt, *, public_key: str | None = None) -> None:
    """Raise :class:`IntegrityError` naming the first thing wrong: the signature (against
    ``public_key`` when given, else the key the receipt names), the removed ids and their
    proofs of absence from the new version's tree."""
    if public_key is not None and public_key.lower() != receipt.public_key:
        raise IntegrityError(
            f"signed by key {receipt.public_key[:16]}…, not the expected {public_key[:16]}…"
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(receipt.public_key))
        key.verify(bytes.fromhex(receipt.signature), receipt.signed_bytes())
    except (InvalidSignature, ValueError):
        raise IntegrityError("the signature does not verify: the receipt was altered") from None
    proven = {p.absent for p in receipt.proofs}
    if sorted(proven) != sorted(set(receipt.removed)) or len(receipt.proofs) != len(
        receipt.removed
    ):
        raise IntegrityError("every removed id needs exactly one proof of absence")
    for proof in receipt.proofs:
        if proof.tree_size != receipt.after.count:
            raise IntegrityError(
                f"a proof is for a tree of {proof.tree_size} leaves; the new version has "
                f"{receipt.after.count}"
            )
        check_absence(proof, receipt.after.merkle_root)


__all__ = ["FORMAT", "ForgetReceipt", "VersionCommitment", "check_receipt", "parse_receipt"]
