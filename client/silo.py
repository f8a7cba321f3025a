"""A silo's data as the ClientApp sees it: increments for training, a local test set.

Two sources: a silo folder on the node's disk (deployment: ``data-path``), or a silo of
the federation's partition of a dataset (simulation: ``partition-id``). The local test set
is the test data of the classes the silo trains on: how the global model serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from client.node import NodeSettings
from common.data import (
    FederatedPartition,
    LabeledDataset,
    Shard,
    fingerprint,
    load_silo_dir,
    silo_name,
)
from common.errors import ConfigError, DataError
from common.federation.config import FederationConfig


@dataclass(frozen=True)
class SiloSource:
    """Where a silo's samples are: one shard per increment and the local test set."""

    name: str
    increments: tuple[LabeledDataset, ...]
    test: LabeledDataset | None

    @property
    def classes(self) -> tuple[int, ...]:
        labels = np.concatenate([np.asarray(s.targets) for s in self.increments])
        return tuple(int(c) for c in np.unique(labels))

    @property
    def increment_sizes(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.increments)

    def train_shard(self, increment: int) -> LabeledDataset:
        if not 0 <= increment < len(self.increments):
            raise DataError(
                f"silo {self.name} holds increments 0..{len(self.increments) - 1}, not {increment}"
            )
        return self.increments[increment]

    def fingerprint(self, increment: int) -> str:
        return fingerprint(self.train_shard(increment))


def _local_test(test: LabeledDataset | None, classes: tuple[int, ...]) -> LabeledDataset | None:
    if test is None:
        return None
    keep = np.flatnonzero(np.isin(np.asarray(test.targets), classes))
    return Shard(test, keep) if len(keep) else None


def open_silo(settings: NodeSettings, config: FederationConfig) -> SiloSource:
    """The node's silo: its folder when ``data-path`` is set, else its simulated partition."""
    if settings.data_path is not None:
        data = load_silo_dir(settings.data_path)
        if settings.silo_id is not None and settings.silo_id != data.name:
            raise ConfigError(
                f"node config says silo-id {settings.silo_id!r} but {settings.data_path} "
                f"holds silo {data.name!r}"
            )
        increments = tuple(data.shard(i) for i in range(data.num_increments))
        source = SiloSource(name=data.name, increments=increments, test=None)
        return SiloSource(data.name, increments, _local_test(data.test, source.classes))
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
    name = settings.silo_id or silo_name(index)
    increments = tuple(partition.silo_shard(index, i) for i in range(partition.num_increments))
    source = SiloSource(name=name, increments=increments, test=None)
    return SiloSource(name, increments, _local_test(partition.test_dataset(), source.classes))
