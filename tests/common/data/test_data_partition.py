"""FederatedPartition on digits: the public part, silos and increments fit together."""

from __future__ import annotations

import numpy as np
import pytest

from tmc.common.data import (
    DatasetSpec,
    FederatedPartition,
    LabeledDataset,
    PartitionSpec,
    fingerprint,
    load_dataset,
    public_private_split,
    silo_classes,
)
from tmc.common.errors import ConfigError

DIGITS = DatasetSpec(name="digits")


@pytest.fixture(scope="module")
def digits_train() -> LabeledDataset:
    return load_dataset(DIGITS, train=True)


def _partition(train: LabeledDataset, **fields: object) -> FederatedPartition:
    spec = PartitionSpec.model_validate({"split": "iid", "num_silos": 4, **fields})
    return FederatedPartition(DIGITS, spec, train_set=train)


@pytest.mark.parametrize("split", ["class", "iid", "dirichlet:0.5"])
def test_public_silos_and_increments_partition_the_train_set(
    digits_train: LabeledDataset, split: str
) -> None:
    partition = _partition(digits_train, split=split, num_silos=5, num_increments=3, seed=1)
    silos = [partition.silo_indices(s) for s in range(5)]
    everything = np.concatenate([partition.public_indices, *silos])
    assert len(everything) == len(np.unique(everything)) == len(digits_train) == 1257
    for silo, indices in enumerate(silos):
        parts = [partition.silo_indices(silo, r) for r in range(3)]
        assert np.array_equal(np.sort(np.concatenate(parts)), indices)
        owner = partition.increment_of(silo)
        for r, part in enumerate(parts):
            assert np.array_equal(indices[owner == r], part)
        shard = partition.silo_shard(silo, 1)
        assert shard.targets.tolist() == digits_train.targets[parts[1]].tolist()
    assert partition.silo_names() == [f"silo-{i}" for i in range(5)]
    assert partition.silo_index("silo-3") == 3


def test_partition_is_deterministic(digits_train: LabeledDataset) -> None:
    first = _partition(digits_train, split="dirichlet:0.3", seed=2, num_increments=2)
    again = FederatedPartition(DIGITS, first.partition_spec)  # loads digits itself
    other = _partition(digits_train, split="dirichlet:0.3", seed=3, num_increments=2)
    for silo in range(4):
        for r in (None, 0, 1):
            assert np.array_equal(first.silo_indices(silo, r), again.silo_indices(silo, r))
    assert fingerprint(first.silo_shard(0)) == fingerprint(again.silo_shard(0))
    assert fingerprint(first.silo_shard(0)) != fingerprint(other.silo_shard(0))


def test_public_part_depends_only_on_fraction_classes_and_seed(
    digits_train: LabeledDataset,
) -> None:
    a = _partition(digits_train, split="class", num_silos=2, num_increments=1, seed=4)
    b = _partition(digits_train, split="iid", num_silos=9, num_increments=5, seed=4)
    assert np.array_equal(a.public_indices, b.public_indices)
    direct, _ = public_private_split(digits_train.targets, fraction=0.2, seed=4)
    assert np.array_equal(a.public_indices, direct)
    assert len(a.public_shard()) == len(direct)


def test_increments_do_not_move_samples_between_silos(digits_train: LabeledDataset) -> None:
    one = _partition(digits_train, num_increments=1)
    three = _partition(digits_train, num_increments=3)
    for silo in range(4):
        assert np.array_equal(one.silo_indices(silo), three.silo_indices(silo))


def test_class_split_silos_hold_disjoint_classes(digits_train: LabeledDataset) -> None:
    partition = _partition(digits_train, split="class", num_silos=5)
    blocks = [set(silo_classes(digits_train.targets, partition.silo_indices(s))) for s in range(5)]
    assert all(len(block) == 2 for block in blocks)
    assert set().union(*blocks) == set(range(10))


def test_public_classes_make_a_harder_base(digits_train: LabeledDataset) -> None:
    partition = _partition(digits_train, public_fraction=0.5, public_classes=(0, 1, 2, 3, 4))
    public = partition.public_shard()
    assert set(public.targets.tolist()) == {0, 1, 2, 3, 4}
    private = np.concatenate([partition.silo_indices(s) for s in range(4)])
    assert set(silo_classes(digits_train.targets, private)) == set(range(10))


def test_partition_errors(digits_train: LabeledDataset) -> None:
    with pytest.raises(ConfigError, match="outside"):
        _partition(digits_train, public_classes=(3, 10))
    partition = _partition(digits_train, num_increments=2)
    with pytest.raises(ConfigError, match="silo 4 does not exist"):
        partition.silo_shard(4)
    with pytest.raises(ConfigError, match="increment 2 does not exist"):
        partition.silo_shard(0, 2)
    with pytest.raises(ConfigError, match="unknown silo"):
        partition.silo_index("silo-9")


def test_test_dataset_is_the_whole_test_split(digits_train: LabeledDataset) -> None:
    partition = _partition(digits_train)
    assert len(partition.test_dataset()) == 540
    assert partition.test_dataset() is partition.test_dataset()
