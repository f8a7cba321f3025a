"""A silo's data as a folder on disk: how a real silo node on another machine gets it.

``export_silo`` writes two files into a folder:

- ``data.safetensors``: ``images`` float32 (N, C, H, W), ``labels`` int64 (N,),
  ``increments`` int64 (N,) (the round each sample arrives in), ``sample_ids`` int64 (N,)
  (positions in the source split, so fingerprints match the server's), and optionally
  ``test_images`` / ``test_labels`` (the whole test split);
- ``silo.json``: a :class:`SiloManifest` describing them, written last, so a folder with a
  manifest is complete.

``load_silo_dir`` checks everything it reads (shapes, dtypes, label range, increment
sizes, the tensors' sha256 and the fingerprints) and names the file at fault.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tmc.common.data.base import InMemoryDataset, LabeledDataset, Shard, fingerprint, tensors
from tmc.common.data.partition import FederatedPartition
from tmc.common.data.spec import DatasetName, PartitionSpec
from tmc.common.data.splits import silo_classes
from tmc.common.errors import DataError
from tmc.common.files import atomic_write_bytes
from tmc.common.hashing import tensors_sha256
from tmc.common.schema import StrictModel

MANIFEST_FILE = "silo.json"
DATA_FILE = "data.safetensors"
_SHA256 = r"^[0-9a-f]{64}$"
_TRAIN_KEYS = ("images", "labels", "increments", "sample_ids")
_TEST_KEYS = ("test_images", "test_labels")


class SiloTestSplit(StrictModel):
    """The test split shipped with a silo (the dataset's whole test split)."""

    identity: str
    num_samples: int = Field(ge=1)
    fingerprint: str = Field(pattern=_SHA256)


class SiloManifest(StrictModel):
    """What ``silo.json`` says about ``data.safetensors``."""

    format_version: int = Field(1, ge=1, le=1)
    dataset: DatasetName
    identity: str = Field(description="the split the samples come from, e.g. 'digits:train'")
    num_classes: int = Field(ge=1)
    in_channels: int = Field(ge=1)
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    silo: str
    silo_index: int = Field(ge=0)
    classes: tuple[int, ...] = Field(description="labels present in the silo's data")
    increment_sizes: tuple[int, ...] = Field(min_length=1)
    fingerprint: str = Field(pattern=_SHA256, description="of all the silo's samples")
    increment_fingerprints: tuple[str, ...]
    partition: PartitionSpec
    tensors_sha256: str = Field(pattern=_SHA256, description="of every tensor in the data file")
    test: SiloTestSplit | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SiloManifest:
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.image_shape[0] != self.in_channels or min(self.image_shape) < 1:
            raise ValueError(f"image_shape {self.image_shape} vs in_channels {self.in_channels}")
        if any(not 0 <= label < self.num_classes for label in self.classes):
            raise ValueError(f"classes {self.classes} outside [0, {self.num_classes})")
        if min(self.increment_sizes) < 1:
            raise ValueError(f"every increment needs a sample: {self.increment_sizes}")
        if len(self.increment_fingerprints) != len(self.increment_sizes):
            raise ValueError("one fingerprint per increment is required")
        return self

    @property
    def num_samples(self) -> int:
        return sum(self.increment_sizes)


@dataclass(frozen=True, eq=False)
class SiloData:
    """A silo folder, read and checked: all its samples, per increment, and the test split."""

    path: Path
    manifest: SiloManifest
    dataset: InMemoryDataset
    increments: tuple[Shard, ...]
    test: InMemoryDataset | None

    @property
    def name(self) -> str:
        return self.manifest.silo

    @property
    def num_increments(self) -> int:
        return len(self.increments)

    def shard(self, increment: int | None = None) -> LabeledDataset:
        """One increment's data, or all of the silo's data when ``increment`` is None."""
        if increment is None:
            return self.dataset
        if not 0 <= increment < len(self.increments):
            raise DataError(
                f"silo {self.name} in {self.path} has increments 0..{len(self.increments) - 1}, "
                f"not {increment}"
            )
        return self.increments[increment]


def export_silo(
    partition: FederatedPartition, silo: int, out_dir: Path, *, include_test: bool = False
) -> SiloManifest:
    """Write silo ``silo`` of ``partition`` (and optionally the test split) to ``out_dir``."""
    shard = partition.silo_shard(silo)
    images, labels = tensors(shard)
    data = {
        "images": images,
        "labels": labels,
        "increments": torch.from_numpy(partition.increment_of(silo)),
        "sample_ids": torch.from_numpy(shard.sample_ids.copy()),
    }
    test_info = None
    if include_test:
        test_set = partition.test_dataset()
        data["test_images"], data["test_labels"] = tensors(test_set)
        test_info = SiloTestSplit(
            identity=test_set.identity, num_samples=len(test_set), fingerprint=fingerprint(test_set)
        )
    increments = [partition.silo_shard(silo, r) for r in range(partition.num_increments)]
    manifest = SiloManifest(
        dataset=partition.dataset_spec.name,
        identity=shard.identity,
        num_classes=shard.num_classes,
        in_channels=shard.in_channels,
        image_shape=shard.image_shape,
        class_names=tuple(shard.classes),
        silo=partition.silo_names()[silo],
        silo_index=silo,
        classes=tuple(silo_classes(shard.targets, np.arange(len(shard)))),
        increment_sizes=tuple(len(part) for part in increments),
        fingerprint=fingerprint(shard),
        increment_fingerprints=tuple(fingerprint(part) for part in increments),
        partition=partition.partition_spec,
        tensors_sha256=tensors_sha256(data),
        test=test_info,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    # Replace the data file by rename, so a reader never sees a half-written one.
    staging = out_dir / f".{DATA_FILE}.{os.getpid()}.tmp"
    try:
        save_file({name: tensor.contiguous() for name, tensor in data.items()}, str(staging))
        os.replace(staging, out_dir / DATA_FILE)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
    atomic_write_bytes(out_dir / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
    return manifest


def _read_manifest(path: Path) -> SiloManifest:
    file = path / MANIFEST_FILE
    if not file.is_file():
        raise DataError(f"silo folder {path} has no {MANIFEST_FILE}; export the silo again")
    try:
        return SiloManifest.model_validate(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as error:
        raise DataError(f"{file} is not a valid silo manifest: {error}") from error


def _read_tensors(file: Path, manifest: SiloManifest) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise DataError(f"silo folder {file.parent} has no {DATA_FILE}; export the silo again")
    try:
        data = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise DataError(f"{file} is not a readable safetensors file: {error}") from error
    expected = set(_TRAIN_KEYS) | (set(_TEST_KEYS) if manifest.test is not None else set())
    if set(data) != expected:
        raise DataError(f"{file} holds tensors {sorted(data)}, expected {sorted(expected)}")
    return data


def _check_split(
    file: Path, images: torch.Tensor, labels: torch.Tensor, manifest: SiloManifest, what: str
) -> None:
    shape = (len(labels), *manifest.image_shape)
    if images.dtype != torch.float32 or tuple(images.shape) != shape:
        raise DataError(
            f"{file}: {what} images are {images.dtype} {tuple(images.shape)}, expected "
            f"float32 {shape}"
        )
    if labels.dtype != torch.int64 or labels.ndim != 1:
        raise DataError(f"{file}: {what} labels must be int64 (N,), got {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= manifest.num_classes):
        raise DataError(
            f"{file}: {what} labels span [{int(labels.min())}, {int(labels.max())}], outside "
            f"[0, {manifest.num_classes})"
        )
    if not torch.isfinite(images).all():
        raise DataError(f"{file}: {what} images contain NaN or Inf")


def load_silo_dir(path: Path) -> SiloData:
    """Read and check a folder written by :func:`export_silo` (a silo node's ``data-path``)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"silo data folder {path} does not exist or is not a directory")
    manifest = _read_manifest(path)
    file = path / DATA_FILE
    data = _read_tensors(file, manifest)
    labels, increments, sample_ids = data["labels"], data["increments"], data["sample_ids"]
    _check_split(file, data["images"], labels, manifest, "train")
    count = len(labels)
    for name, tensor in (("increments", increments), ("sample_ids", sample_ids)):
        if tensor.dtype != torch.int64 or tuple(tensor.shape) != (count,):
            raise DataError(f"{file}: {name} must be int64 ({count},), got {tensor.dtype}")
    num_increments = len(manifest.increment_sizes)
    if count and (increments.min() < 0 or increments.max() >= num_increments):
        raise DataError(f"{file}: increments outside [0, {num_increments})")
    sizes = tuple(int(n) for n in torch.bincount(increments, minlength=num_increments))
    if sizes != manifest.increment_sizes:
        raise DataError(
            f"{file}: increment sizes {sizes}, {MANIFEST_FILE} says {manifest.increment_sizes}"
        )
    if len(torch.unique(sample_ids)) != count or (count and sample_ids.min() < 0):
        raise DataError(f"{file}: sample_ids must be distinct non-negative ids")
    if manifest.test is not None:
        _check_split(file, data["test_images"], data["test_labels"], manifest, "test")
    if tensors_sha256(data) != manifest.tensors_sha256:
        raise DataError(f"{file} does not match the sha256 in {MANIFEST_FILE}: it was altered")
    dataset = InMemoryDataset(
        data["images"],
        labels.numpy(),
        identity=manifest.identity,
        num_classes=manifest.num_classes,
        classes=manifest.class_names,
        sample_ids=sample_ids.numpy(),
    )
    parts = tuple(
        Shard(dataset, np.flatnonzero(increments.numpy() == r)) for r in range(num_increments)
    )
    if (
        fingerprint(dataset) != manifest.fingerprint
        or tuple(fingerprint(part) for part in parts) != manifest.increment_fingerprints
        or tuple(silo_classes(dataset.targets, np.arange(count))) != manifest.classes
    ):
        raise DataError(f"{path}: the data does not match the fingerprints in {MANIFEST_FILE}")
    test = None
    if manifest.test is not None:
        test = InMemoryDataset(
            data["test_images"],
            data["test_labels"].numpy(),
            identity=manifest.test.identity,
            num_classes=manifest.num_classes,
            classes=manifest.class_names,
        )
        if len(test) != manifest.test.num_samples or fingerprint(test) != manifest.test.fingerprint:
            raise DataError(f"{file}: the test split does not match {MANIFEST_FILE}")
    return SiloData(path=path, manifest=manifest, dataset=dataset, increments=parts, test=test)
