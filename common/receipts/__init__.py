"""Forget receipts a silo can check offline: a Merkle tree over a version's component ids,
proofs of absence, and the signed receipt (verification only: signing is the server's)."""

from tmc.common.receipts.merkle import (
    EMPTY_ROOT,
    AbsenceProof,
    InclusionProof,
    absence_proof,
    check_absence,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    verify_inclusion,
)
from tmc.common.receipts.receipt import (
    FORMAT,
    ForgetReceipt,
    VersionCommitment,
    check_receipt,
    parse_receipt,
)

__all__ = [
    "EMPTY_ROOT",
    "FORMAT",
    "AbsenceProof",
    "ForgetReceipt",
    "InclusionProof",
    "VersionCommitment",
    "absence_proof",
    "check_absence",
    "check_receipt",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "parse_receipt",
    "verify_inclusion",
]
