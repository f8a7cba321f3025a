"""The server's side of forget receipts: its signing key, issuing, checking against the
registry (verification of the receipt itself is :mod:`tmc.common.receipts`)."""

from tmc.server.receipts.check import check_against_export, check_against_registry
from tmc.server.receipts.issue import commitment, forget_with_receipt, issue_receipt
from tmc.server.receipts.signing import KEY_FILE, ReceiptSigner, registry_public_key

__all__ = [
    "KEY_FILE",
    "ReceiptSigner",
    "check_against_export",
    "check_against_registry",
    "commitment",
    "forget_with_receipt",
    "issue_receipt",
    "registry_public_key",
]
