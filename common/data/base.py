"""The dataset type every loader returns, shards of it, and fingerprints of shards.

A :class:`LabeledDataset` yields ``(image float32 CxHxW, int label)`` and carries its labels
as a numpy array, so splits never decode an image. Every sample also has a ``sample_id``:
its position in the full split named by ``identity`` (e.g. ``"cifar10:train"``). Shards and
silo folders keep those ids, so a fingerprint computed on the server and one computed by a
silo node from its exported folder agree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from tmc.common.errors import DataError
from tmc.common.hashing import tensors_sha256

IntArray = npt.NDArray[np.int64]


def as_index_array(values: npt.ArrayLike, *, what: str) -> IntArray:
    """``values`` as a 1-D int64 array; a DataError naming ``what`` if it is not integral."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{what} must be a 1-D array, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{what} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


class LabeledDataset(Dataset[tuple[torch.Tensor, int]], ABC):
    """Images with integer labels in ``[0, num_classes)`` and the metadata splits need.

    Attributes: ``identity`` (which full split the samples come from), ``targets`` (int64
    labels), ``sample_ids`` (int64 ids within ``identity``), ``num_classes``,
    ``in_channels``, ``image_shape`` (C, H, W) and ``classes`` (names, in label order).
    """

    def __init__(
        self,
        *,
        identity: str,
        targets: npt.ArrayLike,
        num_classes: int,
        classes: Sequence[str],
        image_shape: tuple[int, int, int],
        sample_ids: npt.ArrayLike | None = None,
    ) -> None:
        self.identity = identity
        self.targets = as_index_array(targets, what=f"labels of {identity}")
        self.sample_ids = (
            np.arange(len(self.targets), dtype=np.int64)
            if sample_ids is None
            else as_index_array(sample_ids, what=f"sample ids of {identity}")
        )
        if len(self.sample_ids) != len(self.targets):
            raise DataError(
                f"{identity}: {len(self.sample_ids)} sample ids for {len(self.targets)} labels"
            )
        if len(classes) != num_classes:
            raise DataError(f"{identity}: {len(classes)} class names for {num_classes} classes")
        if self.targets.size and (self.targets.min() < 0 or self.targets.max() >= num_classes):
            raise DataError(
                f"{identity}: labels must lie in [0, {num_classes}), found "
                f"[{self.targets.min()}, {self.targets.max()}]"
            )
        self.num_classes = num_classes
        self.classes = list(classes)
        self.image_shape = image_shape
        self.in_channels = image_shape[0]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        position = self._position(index)
        return self.image(position), int(self.targets[position])

    def _position(self, index: int) -> int:
        size = len(self.targets)
        if not -size <= index < size:
            raise IndexError(f"index {index} out of range for {size} samples of {self.identity}")
        return index % size

    @abstractmethod
    def image(self, index: int) -> torch.Tensor:
        """The image at ``index`` (0 ≤ index < len), float32 (C, H, W)."""

    def images(self, indices: npt.ArrayLike) -> torch.Tensor:
        """The images at ``indices`` as one float32 (N, C, H, W) batch."""
        positions = as_index_array(indices, what="image indices")
        if positions.size == 0:
            return torch.empty((0, *self.image_shape), dtype=torch.float32)
        return torch.stack([self.image(self._position(int(i))) for i in positions])


class InMemoryDataset(LabeledDataset):
    """Images held as one float32 tensor (digits, and silo folders once read)."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: npt.ArrayLike,
        *,
        identity: str,
        num_classes: int,
        classes: Sequence[str],
        sample_ids: npt.ArrayLike | None = None,
    ) -> None:
        if images.ndim != 4 or images.dtype != torch.float32:
            raise DataError(
                f"{identity}: images must be float32 (N, C, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
        super().__init__(
            identity=identity,
            targets=targets,
            num_classes=num_classes,
            classes=classes,
            image_shape=shape,
            sample_ids=sample_ids,
        )
        if images.shape[0] != len(self.targets):
            raise DataError(f"{identity}: {images.shape[0]} images for {len(self.targets)} labels")
        self.data = images.contiguous()

    def image(self, index: int) -> torch.Tensor:
        return self.data[index]

    def images(self, indices: npt.ArrayLike) -> torch.Tensor:
        positions = as_index_array(indices, what="image indices")
        return self.data[torch.from_numpy(positions)]


class Shard(LabeledDataset):
    """The samples of ``base`` at ``indices`` (positions in ``base``), in that order.

    A shard of a shard points at the first base directly, so indexing never chains.
    """

    base: LabeledDataset
    indices: IntArray

    def __init__(self, base: LabeledDataset, indices: npt.ArrayLike) -> None:
        positions = as_index_array(indices, what=f"shard indices into {base.identity}")
        if positions.size and (positions.min() < 0 or positions.max() >= len(base)):
            raise DataError(
                f"shard indices must lie in [0, {len(base)}) for {base.identity}, found "
                f"[{positions.min()}, {positions.max()}]"
            )
        if isinstance(base, Shard):
            positions = base.indices[positions]
            base = base.base
        super().__init__(
            identity=base.identity,
            targets=base.targets[positions],
            num_classes=base.num_classes,
            classes=base.classes,
            image_shape=base.image_shape,
            sample_ids=base.sample_ids[positions],
        )
        self.base = base
        self.indices = positions

    def image(self, index: int) -> torch.Tensor:
        return self.base.image(int(self.indices[index]))

    def images(self, indices: npt.ArrayLike) -> torch.Tensor:
        positions = as_index_array(indices, what="image indices")
        return self.base.images(self.indices[positions])


class Relabeled(LabeledDataset):
    """``base`` with label ``c`` read as ``mapping[c]`` in the label space ``classes`` (a
    silo's own class order mapped onto a federation's, by name). Samples whose label maps
    to -1 may not be read; callers keep only mapped ones."""

    def __init__(self, base: LabeledDataset, mapping: Sequence[int], classes: Sequence[str]):
        table = np.asarray(mapping, dtype=np.int64)
        if len(table) != base.num_classes:
            raise DataError(f"{base.identity}: {len(table)} mapped labels for {base.num_classes}")
        targets = table[base.targets] if base.targets.size else base.targets
        if targets.size and targets.min() < 0:
            raise DataError(f"{base.identity}: some samples have labels outside {list(classes)}")
        super().__init__(
            identity=base.identity,
            targets=targets,
            num_classes=len(classes),
            classes=classes,
            image_shape=base.image_shape,
            sample_ids=base.sample_ids,
        )
        self.base = base

    def image(self, index: int) -> torch.Tensor:
        return self.base.image(index)

    def images(self, indices: npt.ArrayLike) -> torch.Tensor:
        return self.base.images(indices)


def _identity_tensor(identity: str) -> torch.Tensor:
    return torch.tensor(list(identity.encode("utf-8")), dtype=torch.uint8)


def fingerprint(dataset: LabeledDataset) -> str:
    """sha256 of which samples ``dataset`` holds: its identity, sorted sample ids and labels.

    It names the data a component was trained on without revealing it: equal for the same
    samples in any order, different if one sample or label differs. Image bytes are not
    hashed (ids within an identity already pin them down, and hashing is then cheap).
    """
    order = np.argsort(dataset.sample_ids, kind="stable")
    return tensors_sha256(
        {
            "identity": _identity_tensor(dataset.identity),
            "sample_ids": torch.from_numpy(np.ascontiguousarray(dataset.sample_ids[order])),
            "labels": torch.from_numpy(np.ascontiguousarray(dataset.targets[order])),
        }
    )


def tensors(dataset: LabeledDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``dataset`` as ``(X float32 (N, C, H, W), y int64 (N,))``, for small data."""
    images = dataset.images(np.arange(len(dataset), dtype=np.int64))
    return images, torch.from_numpy(dataset.targets.copy())
