"""Each component's logits on the server's labelled split, computed once and cached.

The tangent model is linear in Δ: f_lin(x; θ0 + Σ αᵢΔᵢ) = f(x; θ0) + Σ αᵢ (J·Δᵢ)(x). So the
logits of *any* composition of the registry's components on a fixed split are a weighted sum
of arrays computed once per component, J·Δᵢ on that split, plus θ0's own logits. Valuing a
silo (leave-one-out, Shapley) or previewing a forget then needs no forward pass at all.

The split is the operator's own labelled evaluation data (a test split the server holds,
mapped onto the federation's labels by class name), never a silo's data. The cache lives in
the registry folder under ``valuation/<split sha256>/``: ``theta0.npy``, ``labels.npy`` and
one ``<component id>.npy`` per component, each written atomically. A component's id is the
hash of its content, so an entry never goes stale; the split's hash covers the prepared
inputs and labels, so another split gets other entries.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset

from tmc.common.errors import DataError
from tmc.common.files import atomic_write_bytes
from tmc.common.models import BaseModelSpec, from_theta0
from tmc.common.tangent import TangentModel
from tmc.server.registry import Registry

CACHE_DIR = "valuation"
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SplitTensors:
    """A labelled split, prepared: inputs (N, C, H, W) in the federation's input spec and
    labels (N,) in its label space."""

    inputs: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_dataset(cls, dataset: Dataset[tuple[torch.Tensor, int]]) -> SplitTensors:
        images, labels = [], []
        for batch_images, batch_labels in DataLoader(dataset, batch_size=512, shuffle=False):
            images.append(batch_images.float())
            labels.append(torch.as_tensor(batch_labels, dtype=torch.long))
        if not images:
            raise DataError("the labelled split is empty: nothing to value components on")
        return cls(torch.cat(images), torch.cat(labels))

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        digest.update(repr(tuple(self.inputs.shape)).encode())
        digest.update(self.inputs.contiguous().numpy().tobytes())
        digest.update(self.labels.contiguous().numpy().astype(np.int64).tobytes())
        return digest.hexdigest()


def _save(path: Path, array: npt.NDArray[np.generic]) -> None:
    # A cache entry is whole or absent, never half written (temp file, fsync, rename).
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def _load(path: Path, shape: tuple[int, ...]) -> Array | None:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # absent or unreadable: recomputed and rewritten
    if array.shape != shape or not np.isfinite(array).all():
        return None
    return np.asarray(array, dtype=np.float64)


class ComponentLogits:
    """θ0's logits and each component's J·Δᵢ on one split, read from or added to the cache."""

    def __init__(self, registry: Registry, split: SplitTensors, *, batch_size: int = 512):
        self.registry = registry
        self.split = split
        self.batch_size = batch_size
        self.split_sha256 = split.sha256
        self.folder = registry.root / CACHE_DIR / self.split_sha256
        spec = BaseModelSpec.model_validate_json(registry.base.spec_json)
        base = from_theta0(spec, registry.theta0(), expected_sha256=registry.base.sha256)
        self._model = TangentModel(base.network, base.tangent_names).eval()
        self._theta0: Array | None = None
        self.computed = 0  # forward passes run by this instance (the rest came from the cache)

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        return self.split.labels.numpy().astype(np.int64)

    @property
    def num_classes(self) -> int:
        return int(self.theta0().shape[1])

    @torch.no_grad()
    def _forward(self) -> tuple[Array, Array | None]:
        primals, tangents = [], []
        for start in range(0, len(self.split.labels), self.batch_size):
            batch = self.split.inputs[start : start + self.batch_size]
            primal, tangent = self._model.forward_dual(batch)
            primals.append(primal.double())
            tangents.append(None if tangent is None else tangent.double())
        primal_all = torch.cat(primals).numpy()
        if any(t is None for t in tangents):
            return primal_all, None
        return primal_all, torch.cat([t for t in tangents if t is not None]).numpy()

    def theta0(self) -> Array:
        """f(x; θ0) on the split, (N, classes)."""
        if self._theta0 is None:
            path = self.folder / "theta0.npy"
            cached = None
            if path.is_file():
                cached = np.load(path, allow_pickle=False).astype(np.float64)
            if cached is None or cached.shape[0] != len(self.split.labels):
                self.folder.mkdir(parents=True, exist_ok=True)
                cached, _ = self._forward()
                _save(path, cached)
                _save(self.folder / "labels.npy", self.labels)
            self._theta0 = cached
        return self._theta0

    def tangent(self, component_id: str) -> Array:
        """(J·Δᵢ)(x) on the split for one active component, (N, classes)."""
        shape = self.theta0().shape
        path = self.folder / f"{component_id}.npy"
        cached = _load(path, shape)
        if cached is not None:
            return cached
        component = self.registry.get_component(component_id)
        self._model.load_delta(dict(component.delta))
        _, tangent = self._forward()
        self.computed += 1
        result = np.zeros(shape) if tangent is None else tangent
        _save(path, result)
        return result

    def tangents(self, component_ids: Sequence[str]) -> dict[str, Array]:
        return {cid: self.tangent(cid) for cid in component_ids}


__all__ = ["CACHE_DIR", "ComponentLogits", "SplitTensors"]
