"""What one accuracy experiment runs on: the base θ0, the silos' data and the held-out sets.

A :class:`Scenario` (dataset, base, split, number of silos, seed) is small and picklable:
the in-process methods and the Flower FedAvg ClientApps (in Ray actors) rebuild the same
:class:`Prepared` data from it, deterministically.

Every silo's private data is cut once more, per class and seeded: 80 % for training and
20 % for *validation*. The pooled validation parts choose each method's learning rate
(docs/notes/benchmarks.md: never the test set); every method trains on the same 80 % parts, and the
paragon on their union. The test split is only ever scored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tmc.common.data import (
    DatasetSpec,
    FederatedPartition,
    IntArray,
    LabeledDataset,
    PartitionSpec,
    Shard,
    derive_seed,
)
from tmc.common.errors import ConfigError
from tmc.common.models import BaseModelSpec, MaterializedBase, materialize
from tmc.common.models.spec import FileWeights

BaseKind = Literal["all", "half", "lite0"]
VALIDATION_FRACTION = 0.2
_VALIDATION_STAGE = 7_301  # a seed path no partition stage uses
HALF_CLASSES = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Scenario:
    """One configuration of the benchmark, for one seed.

    ``base``: ``all`` = pre-trained on the public 20 % of every class; ``half`` = on the
    public 20 % of classes 0-4 only (the harder base of docs/notes/benchmarks.md); ``lite0`` = the
    strong pre-trained backbone (EfficientNet-Lite0, ImageNet, on ``mnist5k``:
    ``bench.accuracy_backbone``), nothing held out as public. For CIFAR the base is a
    weights file (``base_weights``) and nothing is held out as public. ``loss_classes``
    is the recipe's ``TrainConfig.loss_classes`` (``all``: the reference's).
    """

    split: str
    num_silos: int
    seed: int
    base: BaseKind = "all"
    dataset: str = "digits"
    data_root: str = ""
    base_weights: str = ""
    architecture: str = "resnet18"
    loss_classes: str = "all"

    @property
    def config_key(self) -> str:
        """``<split>-<silos>`` (``half:`` / ``lite0:`` prefix for the other bases, a
        ``+present`` suffix for the restricted loss), seed-independent."""
        prefix = "" if self.base == "all" else f"{self.base}:"
        dataset = "" if self.dataset in ("digits", "mnist5k") else f"{self.dataset}:"
        recipe = "" if self.loss_classes == "all" else f"+{self.loss_classes}"
        return f"{dataset}{prefix}{self.split}-{self.num_silos}{recipe}"

    @property
    def uses_class_split(self) -> bool:
        return self.split == "class"

    def dataset_spec(self) -> DatasetSpec:
        if self.dataset in ("digits", "mnist5k"):
            return DatasetSpec(name=self.dataset)
        if not self.data_root:
            raise ConfigError(f"{self.dataset} needs --data-root (a local copy; no download)")
        return DatasetSpec.model_validate({"name": self.dataset, "root": self.data_root})

    def public_classes(self) -> tuple[int, ...] | None:
        return HALF_CLASSES if self.base == "half" else None

    def public_fraction(self) -> float:
        return 0.2 if self.dataset == "digits" and self.base != "lite0" else 0.0

    def base_spec(self) -> BaseModelSpec:
        if self.dataset == "digits":
            return BaseModelSpec.builtin_digits(
                seed=self.seed, public_classes=self.public_classes()
            )
        if not self.base_weights:
            raise ConfigError(f"{self.dataset} needs --base-weights (a local state-dict file)")
        spec = self.dataset_spec()
        return BaseModelSpec.model_validate(
            {
                "architecture": self.architecture,
                "num_classes": spec.num_classes,
                "in_channels": spec.in_channels,
                "weights": FileWeights(path=Path(self.base_weights)),
                "head_seed": self.seed,
                "tangent": "full",
            }
        )

    def partition_spec(self) -> PartitionSpec:
        return PartitionSpec(
            split=self.split,
            num_silos=self.num_silos,
            num_increments=1,
            seed=self.seed,
            public_fraction=self.public_fraction(),
            public_classes=self.public_classes() if self.public_fraction() else None,
        )

    def kappa(self) -> float:
        """κ = 15 on class splits, 5 otherwise (reference values, docs/notes/method.md)."""
        return 15.0 if self.uses_class_split else 5.0


@dataclass(frozen=True, eq=False)
class Prepared:
    """θ0 and the data of one scenario."""

    scenario: Scenario
    base: MaterializedBase
    partition: FederatedPartition
    train_parts: tuple[LabeledDataset, ...]
    """each silo's training part (80 % of its private data)"""
    validation: LabeledDataset
    """the silos' validation parts, pooled"""
    pooled_train: LabeledDataset
    """the union of the training parts: what the paragon trains on"""
    test: LabeledDataset
    tasks: tuple[tuple[int, ...], ...]
    """each silo's classes (the tasks of task-incremental scoring on a class split)"""


def carve_validation(
    targets: np.ndarray, indices: IntArray, *, fraction: float, seed: int
) -> tuple[IntArray, IntArray]:
    """Split a silo's sample positions into (train, validation): per class, a seeded
    round(fraction · n_c) go to validation, but never a class's last training sample."""
    rng = np.random.Generator(np.random.PCG64(seed))
    train, validation = [], []
    for label in np.unique(targets[indices]):
        members = rng.permutation(indices[targets[indices] == label])
        take = min(int(np.floor(fraction * len(members) + 0.5)), len(members) - 1)
        validation.append(members[:take])
        train.append(members[take:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(validation))


@functools.lru_cache(maxsize=32)
def prepare(scenario: Scenario) -> Prepared:
    """Materialise θ0 (pre-trained and cached on first use) and cut the data."""
    if scenario.base == "lite0":
        from bench.accuracy_backbone import DATASET, backbone_base, lite_features

        if scenario.dataset != DATASET.name:
            raise ConfigError(f"the lite0 base runs on {DATASET.name}, not {scenario.dataset}")
        base = backbone_base(scenario.seed)
        features = lite_features(train=True)
        partition = FederatedPartition(DATASET, scenario.partition_spec(), train_set=features)
        test: LabeledDataset = lite_features(train=False)
    else:
        base = materialize(scenario.base_spec())
        partition = FederatedPartition(scenario.dataset_spec(), scenario.partition_spec())
        test = partition.test_dataset()
    targets = np.asarray(partition.train_set.targets)
    train_idx: list[IntArray] = []
    val_idx: list[IntArray] = []
    for silo in range(partition.num_silos):
        train, validation = carve_validation(
            targets,
            partition.silo_indices(silo),
            fraction=VALIDATION_FRACTION,
            seed=derive_seed(scenario.seed, _VALIDATION_STAGE, silo),
        )
        train_idx.append(train)
        val_idx.append(validation)
    data = partition.train_set
    return Prepared(
        scenario=scenario,
        base=base,
        partition=partition,
        train_parts=tuple(Shard(data, idx) for idx in train_idx),
        validation=Shard(data, np.sort(np.concatenate(val_idx))),
        pooled_train=Shard(data, np.sort(np.concatenate(train_idx))),
        test=test,
        tasks=tuple(
            tuple(int(c) for c in np.unique(targets[partition.silo_indices(silo)]))
            for silo in range(partition.num_silos)
        ),
    )
