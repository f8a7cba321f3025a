"""Checking a receipt against what it speaks of: the registry, or an export of the version.

:func:`tmc.common.receipts.check_receipt` proves the receipt is the server's and internally
sound; these check that the world matches it: the version it names holds exactly the
components its Merkle root commits to, none of the removed ones, and its Δ is the exact
composition of those components (recomposed here from their stored files).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from tmc.common.components import compose
from tmc.common.errors import IntegrityError
from tmc.common.hashing import tensors_sha256
from tmc.common.receipts import ForgetReceipt, merkle_root
from tmc.server.registry import Registry
from tmc.server.registry.model_file import DELTA_PREFIX, METADATA_KEY


def _check_ids(receipt: ForgetReceipt, ids: tuple[str, ...] | list[str], where: str) -> None:
    if merkle_root(ids) != receipt.after.merkle_root:
        raise IntegrityError(f"{where}: its component ids do not match the receipt's Merkle root")
    still = sorted(set(ids) & set(receipt.removed))
    if still:
        raise IntegrityError(f"{where}: still holds removed component {still[0][:12]}…")


def check_against_registry(receipt: ForgetReceipt, registry: Registry) -> None:
    """The receipt's new version is in ``registry`` as stated, and recomposes exactly."""
    if registry.base.sha256 != receipt.base_sha256:
        raise IntegrityError("the receipt is for another federation (θ0 differs)")
    version = registry.version(receipt.after.number)
    where = f"version {version.number}"
    _check_ids(receipt, version.component_ids, where)
    if version.delta_sha256 != receipt.after.delta_sha256:
        raise IntegrityError(f"{where}: its Δ hash differs from the receipt's")
    for component_id in receipt.removed:
        if registry.component_record(component_id).status != "forgotten":
            raise IntegrityError(f"component {component_id[:12]}… is not forgotten")
    if version.component_ids:
        components = [registry.get_component(c) for c in version.component_ids]
        recomposed = tensors_sha256(compose(components, version.weighting))
        if recomposed != receipt.after.delta_sha256:
            raise IntegrityError(
                f"{where}: recomposing its components gives another Δ than the receipt's"
            )


def check_against_export(receipt: ForgetReceipt, path: Path) -> None:
    """``path`` (``tmc export``) is the receipt's new version: same ids, same Δ."""
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_len))
        metadata = json.loads(header["__metadata__"][METADATA_KEY])
    except (OSError, SafetensorError, ValueError, KeyError) as exc:
        raise IntegrityError(f"{path} is not a model export: {exc}") from exc
    if metadata.get("version") != receipt.after.number:
        raise IntegrityError(
            f"{path} is version {metadata.get('version')}, the receipt's is {receipt.after.number}"
        )
    _check_ids(receipt, list(metadata.get("component_ids", [])), str(path))
    delta = {
        name.removeprefix(DELTA_PREFIX): value
        for name, value in tensors.items()
        if name.startswith(DELTA_PREFIX)
    }
    if tensors_sha256(delta) != receipt.after.delta_sha256:
        raise IntegrityError(f"{path}: its Δ is not the one the receipt names")


__all__ = ["check_against_export", "check_against_registry"]
