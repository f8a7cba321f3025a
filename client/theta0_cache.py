"""θ0 on a node's disk, by sha256: received once from the server, verified, reused.

With Flower's subprocess isolation every message starts a fresh ClientApp process, so the
cache lives on disk; a process also keeps what it loaded in memory for its lifetime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from tmc.common.errors import ModelError
from tmc.common.files import atomic_write_bytes
from tmc.common.hashing import tensors_sha256
from tmc.common.models import BaseModelSpec, MaterializedBase, from_theta0
from tmc.common.models.materialize import CACHE_ENV, default_cache_dir


def node_cache_dir(configured: Path | None) -> Path:
    """The node's ``cache-dir``, else ``$TMC_CACHE_DIR``/``~/.cache/tmc``, + ``/theta0``."""
    root = configured or (Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else None)
    return (root or default_cache_dir()) / "theta0"


class Theta0Cache:
    """θ0 files named by their sha256; nothing is stored or returned unverified."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._loaded: dict[str, MaterializedBase] = {}

    def _path(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.safetensors"

    def has(self, sha256: str) -> bool:
        return sha256 in self._loaded or self._path(sha256).is_file()

    def store(self, state: Mapping[str, torch.Tensor], sha256: str) -> None:
        """Keep θ0 after checking that it hashes to ``sha256``."""
        actual = tensors_sha256(state)
        if actual != sha256:
            raise ModelError(
                f"θ0 received from the server hashes to {actual[:12]}…, announced "
                f"{sha256[:12]}…: not stored"
            )
        payload = save({k: v.contiguous() for k, v in state.items()})
        atomic_write_bytes(self._path(sha256), payload, mode=0o600)

    def load(self, spec: BaseModelSpec, sha256: str) -> MaterializedBase:
        if sha256 in self._loaded:
            return self._loaded[sha256]
        path = self._path(sha256)
        if not path.is_file():
            raise ModelError(
                f"this node does not hold θ0 {sha256[:12]}…; the server sends it in "
                "query.theta0 after query.hello"
            )
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"cached θ0 {path} is unreadable ({exc}); delete it") from exc
        base = from_theta0(spec, state, expected_sha256=sha256)
        self._loaded[sha256] = base
        return base
