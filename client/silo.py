"""A silo's data as the ClientApp sees it: increments for training, a local test set, and
the facts it states at hello.

Three sources, all read in the federation's label space (class names mapped by name) and
input spec, which the server sends with every message:

- a plain image folder on the node's disk (``data-path`` without ``silo.json``: the silo's
  own data, see ``common.data.silo_folder``), one increment, or one per sub-folder of
  its ``increments/``;
- a silo folder written by ``tmc data export`` (``data-path`` with ``silo.json``);
- a silo of the federation's partition of a dataset (simulation: ``partition-id``).

A silo whose data do not fit (unknown classes, other channels, no images) still opens: it
states its facts and its problems at hello, and refuses to train with the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tmc.client.node import NodeSettings
from tmc.common.data import (
    DataSpec,
    FederatedPartition,
    LabeledDataset,
    Relabeled,
    Shard,
    fingerprint,
    is_silo_folder,
    load_silo_dir,
    scan_silo_folder,
    silo_name,
)
from tmc.common.data.silo_dir import MANIFEST_FILE
from tmc.common.errors import ConfigError, DataError
from tmc.common.federation import PartitionRecord, SiloSourceKind, data_problems
from tmc.common.federation.config import FederationConfig


@dataclass(frozen=True)
class SiloSource:
    """Where a silo's samples are (one shard per increment, the local test set) and what it
    says about them. ``increments`` and ``test`` are empty/None when ``problems`` is not."""

    name: str
    source: SiloSourceKind
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    channels: tuple[int, ...]
    increments: tuple[LabeledDataset, ...]
    increment_fingerprints: tuple[str, ...]
    test: LabeledDataset | None
    image_size: int | None = None
    partition: PartitionRecord | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def classes(self) -> tuple[int, ...]:
        """The federation's labels present in the silo's training data."""
        if not self.increments:
            return ()
        labels = np.concatenate([np.asarray(s.targets) for s in self.increments])
        return tuple(int(c) for c in np.unique(labels))

    @property
    def increment_sizes(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.increments)

    def train_shard(self, increment: int) -> LabeledDataset:
        if self.problems:
            raise DataError(f"silo {self.name} cannot train: {'; '.join(self.problems)}")
        if not 0 <= increment < len(self.increments):
            raise DataError(
                f"silo {self.name} holds increments 0..{len(self.increments) - 1}, not {increment}"
            )
        return self.increments[increment]

    def fingerprint(self, increment: int) -> str:
        return self.increment_fingerprints[increment] if self.increment_fingerprints else ""


def _local_test(test: LabeledDataset | None, classes: tuple[int, ...]) -> LabeledDataset | None:
    """The test samples of the classes the silo trains on: how the model serves it."""
    if test is None:
        return None
    keep = np.flatnonzero(np.isin(np.asarray(test.targets), classes))
    return Shard(test, keep) if len(keep) else None


def _mapping(names: list[str], data: DataSpec) -> list[int]:
    index = {name: i for i, name in enumerate(data.classes)}
    return [index.get(name, -1) for name in names]


def _known(dataset: LabeledDataset, mapping: list[int], data: DataSpec) -> LabeledDataset:
    """The samples of ``dataset`` whose class the federation knows, relabelled by name."""
    table = np.asarray(mapping, dtype=np.int64)
    keep = np.flatnonzero(table[dataset.targets] >= 0) if dataset.targets.size else np.zeros(0)
    return Relabeled(Shard(dataset, keep), [max(m, 0) for m in mapping], data.classes)


def _finish(
    name: str,
    source: SiloSourceKind,
    data: DataSpec,
    *,
    class_names: tuple[str, ...],
    class_counts: tuple[int, ...],
    channels: tuple[int, ...],
    increments: tuple[LabeledDataset, ...],
    test: LabeledDataset | None,
    image_size: int | None = None,
    partition: PartitionRecord | None = None,
) -> SiloSource:
    present = tuple(n for n, count in zip(class_names, class_counts, strict=True) if count)
    counts = tuple(count for count in class_counts if count)
    problems = tuple(
        data_problems(
            data,
            class_names=present,
            class_counts=counts,
            channels=channels,
            image_size=image_size,
        )
    )
    if problems:
        increments, test = (), None
    silo = SiloSource(
        name=name,
        source=source,
        class_names=present,
        class_counts=counts,
        channels=channels,
        increments=increments,
        increment_fingerprints=tuple(fingerprint(part) for part in increments),
        test=None,
        image_size=image_size,
        partition=partition,
        problems=problems,
    )
    return SiloSource(**{**silo.__dict__, "test": _local_test(test, silo.classes)})


def _from_folder(settings: NodeSettings, data: DataSpec) -> SiloSource:
    if settings.data_path is None:  # pragma: no cover - the caller checked
        raise ConfigError("no data-path")
    if settings.silo_id is None:
        raise ConfigError(
            f"{settings.data_path} is an image folder: the node config must name its silo "
            "(silo-id), since the folder does not"
        )
    folder = scan_silo_folder(settings.data_path, test_fraction=settings.test_fraction)
    counts = folder.train.counts(len(folder.class_names))
    increments = folder.increment_sets(data)
    return _finish(
        settings.silo_id,
        "image-folder",
        data,
        class_names=folder.class_names,
        class_counts=counts,
        channels=folder.channels,
        increments=increments if any(len(part) for part in increments) else (),
        test=folder.test_set(data),
    )


def _from_split(
    name: str,
    source: SiloSourceKind,
    data: DataSpec,
    *,
    split: LabeledDataset,
    parts: list[np.ndarray],
    test: LabeledDataset | None,
    partition: PartitionRecord,
) -> SiloSource:
    """A silo whose increments are index sets into one labelled split (an export, or a
    simulated silo's part of a dataset), relabelled by name into the federation's space."""
    names = list(split.classes)
    mapping = _mapping(names, data)
    counts = np.bincount(split.targets[np.concatenate(parts)], minlength=len(names))
    increments: tuple[LabeledDataset, ...] = ()
    known_test = None
    if all(mapping[c] >= 0 for c in np.flatnonzero(counts)):
        relabeled = Relabeled(split, [max(m, 0) for m in mapping], data.classes)
        increments = tuple(Shard(relabeled, indices) for indices in parts)
        known_test = _known(test, mapping, data) if test is not None else None
    return _finish(
        name,
        source,
        data,
        class_names=tuple(names),
        class_counts=tuple(int(n) for n in counts),
        channels=(split.in_channels,),
        increments=increments,
        test=known_test,
        image_size=split.image_shape[1],
        partition=partition,
    )


def _from_export(settings: NodeSettings, data: DataSpec) -> SiloSource:
    if settings.data_path is None:  # pragma: no cover - the caller checked
        raise ConfigError("no data-path")
    export = load_silo_dir(settings.data_path)
    if settings.silo_id is not None and settings.silo_id != export.name:
        raise ConfigError(
            f"node config says silo-id {settings.silo_id!r} but {settings.data_path} "
            f"holds silo {export.name!r}"
        )
    manifest = export.manifest
    return _from_split(
        export.name,
        "export",
        data,
        split=export.dataset,
        parts=[part.indices for part in export.increments],
        test=export.test,
        partition=PartitionRecord(identity=manifest.identity, partition=manifest.partition),
    )


def _from_partition(settings: NodeSettings, config: FederationConfig, data: DataSpec) -> SiloSource:
    if settings.partition_id is None:  # pragma: no cover - NodeSettings forbids it
        raise ConfigError("node has neither data-path nor partition-id")
    partition = FederatedPartition(config.dataset_spec(), config.partition_spec())
    index = settings.partition_id
    if index >= partition.num_silos:
        raise ConfigError(
            f"simulation node {index} has no silo: the run config partitions "
            f"{config.dataset} into num-silos={partition.num_silos}; "
            "run with at most that many supernodes"
        )
    shards = [partition.silo_shard(index, i) for i in range(partition.num_increments)]
    return _from_split(
        settings.silo_id or silo_name(index),
        "simulation",
        data,
        split=partition.train_set,
        parts=[shard.indices for shard in shards],
        test=partition.test_dataset(),
        partition=PartitionRecord(
            identity=partition.train_set.identity, partition=config.partition_spec()
        ),
    )


def open_silo(settings: NodeSettings, config: FederationConfig, data: DataSpec) -> SiloSource:
    """The node's silo, read in the federation's label space and input spec ``data``."""
    if settings.data_path is not None:
        path = settings.data_path.expanduser()
        if (path / MANIFEST_FILE).is_file():
            return _from_export(settings, data)
        if is_silo_folder(path):
            return _from_folder(settings, data)
        raise DataError(
            f"{path} is neither a silo folder written by `tmc data export` (it has no "
            f"{MANIFEST_FILE}) nor an image folder (class sub-folders of images, or train/ "
            "and test/ folders of them)"
            if path.is_dir()
            else f"silo data folder {path} does not exist or is not a directory"
        )
    return _from_partition(settings, config, data)
