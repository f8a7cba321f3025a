"""Canonical hashes of tensors, so that two machines can prove they hold the same bytes.

The digest covers, for each tensor in name order, its name, dtype, shape and raw
little-endian bytes. It does not depend on a file format, so the same θ0 hashes the same
whether it travelled as safetensors, a Flower ArrayRecord or a torch checkpoint.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping

import torch


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw bytes of a tensor in C order (little-endian on every platform we run on)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def update_with_tensors(digest: hashlib._Hash, tensors: Mapping[str, torch.Tensor]) -> None:
    """Feed a canonical serialisation of ``tensors`` into ``digest``."""
    if sys.byteorder != "little":  # pragma: no cover - no big-endian machine in sight
        raise RuntimeError("canonical tensor hashing assumes a little-endian machine")
    for name in sorted(tensors):
        tensor = tensors[name]
        header = f"{name}\0{str(tensor.dtype).removeprefix('torch.')}\0{tuple(tensor.shape)}\0"
        digest.update(header.encode())
        digest.update(tensor_bytes(tensor))


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Hex sha256 of a name → tensor mapping, independent of insertion order and device."""
    digest = hashlib.sha256()
    update_with_tensors(digest, tensors)
    return digest.hexdigest()
