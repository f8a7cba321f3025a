"""A dataset's train split divided into a public part, silos and per-silo increments.

The scheme, computed once from a :class:`DatasetSpec` and a :class:`PartitionSpec`:

1. **Public split first.** ``public_private_split(targets, fraction=public_fraction,
   seed=seed, classes=public_classes)`` holds out a stratified public part (for
   pre-training the base model). It uses the spec's ``seed`` as is and ignores the silo
   settings, so any caller that makes the same call gets the same public part.
2. **Silos from the private remainder.** ``split_silos`` divides only the private samples
   (class, iid or dirichlet split), so no silo shares a sample with the public part or
   with another silo.
3. **Increments per silo.** ``split_increments`` cuts each silo's samples into
   ``num_increments`` stratified parts: increment r is the data the silo receives in
   round r.

Stages 2 and 3 draw from seeds derived from ``seed`` and the stage (and silo), so changing
the number of increments never moves a sample from one silo to another. The test split
is never partitioned: every silo and the server evaluate on all of it.
"""

from __future__ import annotations

import numpy as np

from tmc.common.data.base import IntArray, LabeledDataset, Shard
from tmc.common.data.datasets import load_dataset
from tmc.common.data.spec import DatasetSpec, PartitionSpec
from tmc.common.data.splits import public_private_split, split_increments, split_silos
from tmc.common.errors import ConfigError, DataError

_SILO_STAGE = 1
_INCREMENT_STAGE = 2


def derive_seed(seed: int, *path: int) -> int:
    """An independent 63-bit seed for one stage of a partition (numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, *path]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def silo_name(silo: int) -> str:
    """The canonical name of silo number ``silo`` (``"silo-0"``, ``"silo-1"``, ...)."""
    return f"silo-{silo}"


class FederatedPartition:
    """The public part, silos and increments of one dataset's train split (see module doc).

    ``train_set`` may be passed when already loaded; it must be the train split of
    ``dataset``. The test split is loaded on first use.
    """

    def __init__(
        self,
        dataset: DatasetSpec,
        partition: PartitionSpec,
        *,
        train_set: LabeledDataset | None = None,
    ) -> None:
        self.dataset_spec = dataset
        self.partition_spec = partition
        self.train_set = train_set if train_set is not None else load_dataset(dataset, train=True)
        if self.train_set.num_classes != dataset.num_classes:
            raise DataError(
                f"train set {self.train_set.identity} has {self.train_set.num_classes} classes, "
                f"the spec {dataset.name!r} has {dataset.num_classes}"
            )
        classes = partition.public_classes
        if classes is not None and max(classes) >= dataset.num_classes:
            raise ConfigError(
                f"public_classes {classes} name labels outside [0, {dataset.num_classes}) "
                f"of {dataset.name!r}"
            )
        targets = self.train_set.targets
        self.public_indices, self.private_indices = public_private_split(
            targets, fraction=partition.public_fraction, seed=partition.seed, classes=classes
        )
        silos = split_silos(
            targets,
            self.private_indices,
            num_silos=partition.num_silos,
            split=partition.split,
            seed=derive_seed(partition.seed, _SILO_STAGE),
        )
        self._silos: list[IntArray] = silos
        self._increments: list[list[IntArray]] = [
            split_increments(
                indices,
                targets,
                num_increments=partition.num_increments,
                seed=derive_seed(partition.seed, _INCREMENT_STAGE, silo),
            )
            for silo, indices in enumerate(silos)
        ]
        self._test_set: LabeledDataset | None = None

    @property
    def num_silos(self) -> int:
        return len(self._silos)

    @property
    def num_increments(self) -> int:
        return self.partition_spec.num_increments

    def silo_names(self) -> list[str]:
        """``["silo-0", "silo-1", ...]``, in silo order."""
        return [silo_name(silo) for silo in range(self.num_silos)]

    def silo_index(self, name: str) -> int:
        """The number of the silo called ``name``; a ConfigError for an unknown name."""
        names = self.silo_names()
        if name not in names:
            raise ConfigError(f"unknown silo {name!r}: this partition has {names[0]}..{names[-1]}")
        return names.index(name)

    def _check_silo(self, silo: int, increment: int | None) -> None:
        if not 0 <= silo < self.num_silos:
            raise ConfigError(f"silo {silo} does not exist: there are {self.num_silos} silos")
        if increment is not None and not 0 <= increment < self.num_increments:
            raise ConfigError(
                f"increment {increment} does not exist: there are {self.num_increments}"
            )

    def silo_indices(self, silo: int, increment: int | None = None) -> IntArray:
        """Positions in the train set of a silo's samples (one increment, or all of them)."""
        self._check_silo(silo, increment)
        if increment is None:
            return self._silos[silo].copy()
        return self._increments[silo][increment].copy()

    def increment_of(self, silo: int) -> IntArray:
        """For each sample of ``silo`` (in :meth:`silo_indices` order), its increment."""
        self._check_silo(silo, None)
        owner = np.empty(len(self._silos[silo]), dtype=np.int64)
        for increment, indices in enumerate(self._increments[silo]):
            owner[np.searchsorted(self._silos[silo], indices)] = increment
        return owner

    def public_shard(self) -> Shard:
        """The public part of the train set (empty when ``public_fraction`` is 0)."""
        return Shard(self.train_set, self.public_indices)

    def silo_shard(self, silo: int, increment: int | None = None) -> Shard:
        """A silo's data: one increment, or every increment when ``increment`` is None."""
        return Shard(self.train_set, self.silo_indices(silo, increment))

    def test_dataset(self) -> LabeledDataset:
        """The dataset's whole test split (loaded once)."""
        if self._test_set is None:
            self._test_set = load_dataset(self.dataset_spec, train=False)
        return self._test_set
