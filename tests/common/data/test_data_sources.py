"""Loaders (digits, CIFAR from fake batches, ImageFolder from PNGs), shards, fingerprints."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tmc.common.data import (
    DIGITS_TEST_SIZE,
    DatasetSpec,
    InMemoryDataset,
    Shard,
    UInt8ImageDataset,
    fingerprint,
    load_dataset,
    tensors,
)
from tmc.common.data.torchvision_sources import CIFAR10_MEAN, CIFAR10_STD
from tmc.common.errors import DataError

ImageTree = Callable[[dict[str, int]], Path]


def test_digits_fixed_split_sizes_and_range() -> None:
    train = load_dataset(DatasetSpec(name="digits"), train=True)
    test = load_dataset(DatasetSpec(name="digits"), train=False)
    assert (len(train), len(test)) == (1257, DIGITS_TEST_SIZE) == (1257, 540)
    assert (train.num_classes, train.in_channels, train.classes[3]) == (10, 1, "3")
    image, label = train[0]
    assert image.dtype == torch.float32
    assert image.shape == (1, 8, 8)
    assert isinstance(label, int)
    x, y = tensors(test)
    assert x.shape == (540, 1, 8, 8)
    assert y.dtype == torch.int64
    assert float(x.min()) >= 0.0
    assert float(x.max()) <= 1.0
    assert train.targets.dtype == np.int64
    expected = (np.bincount(train.targets) + np.bincount(test.targets)) * 540 / 1797
    assert np.all(np.abs(np.bincount(test.targets) - expected) <= 1), "stratified"
    again = load_dataset(DatasetSpec(name="digits"), train=False)
    assert torch.equal(tensors(again)[0], x), "the split is fixed"
    assert fingerprint(train) != fingerprint(test)


def test_cifar10_from_fake_batches(fake_cifar10: Path) -> None:
    spec = DatasetSpec(name="cifar10", root=fake_cifar10)
    train = load_dataset(spec, train=True)
    test = load_dataset(spec, train=False)
    assert (len(train), len(test)) == (30, 5)
    assert (train.num_classes, train.in_channels, train.classes[0]) == (10, 3, "class0")
    assert train.targets.dtype == np.int64
    assert train.identity == "cifar10:train"
    image, label = train[4]
    assert image.shape == (3, 32, 32)
    assert image.dtype == torch.float32
    assert label == int(train.targets[4])
    assert isinstance(train, UInt8ImageDataset)
    raw = torch.from_numpy(train.pixels[4]).permute(2, 0, 1).float() / 255
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert torch.allclose(image, (raw - mean) / std)
    batch = train.images(np.arange(len(train)))
    assert torch.equal(batch, torch.stack([train[i][0] for i in range(len(train))]))


def test_cifar100_from_fake_batches(fake_cifar100: Path) -> None:
    train = load_dataset(DatasetSpec(name="cifar100", root=fake_cifar100), train=True)
    assert (len(train), train.num_classes, train.classes[99]) == (12, 100, "fine99")


def test_missing_cifar_says_where_and_how(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_dataset(DatasetSpec(name="cifar10", root=root), train=True)
    message = str(info.value)
    assert str(root / "cifar-10-batches-py") in message
    assert "download=true" in message
    assert "cifar-10-python.tar.gz" in message


def test_corrupted_cifar_is_a_data_error(untrusted_cifar10: Path) -> None:
    with pytest.raises(DataError, match="corrupted"):
        load_dataset(DatasetSpec(name="cifar10", root=untrusted_cifar10), train=True)


def test_imagefolder_train_and_test(image_tree: ImageTree) -> None:
    root = image_tree({"train/cat": 3, "train/dog": 2, "train/eel": 2, "test/dog": 2})
    spec = DatasetSpec(name="imagefolder", root=root, image_size=16)
    assert spec.num_classes == 3
    train = load_dataset(spec, train=True)
    test = load_dataset(spec, train=False)
    assert (len(train), len(test)) == (7, 2)
    assert train.classes == test.classes == ["cat", "dog", "eel"]
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert test.targets.tolist() == [1, 1], "labels follow the train split's classes"
    image, _ = train[0]
    assert image.shape == (3, 16, 16)
    assert image.dtype == torch.float32
    x, y = tensors(train)
    assert x.shape == (7, 3, 16, 16)
    copy = pickle.loads(pickle.dumps(train))  # DataLoader workers receive a pickled copy
    assert torch.equal(copy[6][0], x[6])
    assert y.tolist() == train.targets.tolist()


def test_imagefolder_flat_layout_has_no_test_split(image_tree: ImageTree) -> None:
    root = image_tree({"cat": 1, "dog": 1})
    spec = DatasetSpec(name="imagefolder", root=root, image_size=8)
    assert len(load_dataset(spec, train=True)) == 2
    with pytest.raises(DataError, match="no test split"):
        load_dataset(spec, train=False)


@pytest.mark.parametrize(
    ("tree", "train", "message"),
    [
        ({}, True, "no class folders"),
        ({"train/cat": 1, "train/dog": 0, "test/cat": 1}, True, r"without images: \['dog'\]"),
        ({"train/cat": 1, "test/cat": 1, "test/cow": 1}, False, r"lacks: \['cow'\]"),
        ({"train/cat": 1}, False, "no 'test' folder"),
    ],
)
def test_imagefolder_errors(
    image_tree: ImageTree, tree: dict[str, int], train: bool, message: str
) -> None:
    spec = DatasetSpec(name="imagefolder", root=image_tree(tree), image_size=8)
    with pytest.raises(DataError, match=message):
        load_dataset(spec, train=train)


def test_undecodable_image_is_a_data_error(image_tree: ImageTree) -> None:
    root = image_tree({"train/cat": 1})
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    train = load_dataset(DatasetSpec(name="imagefolder", root=root, image_size=8), train=True)
    with pytest.raises(DataError, match=r"broken\.png"):
        tensors(train)


def test_missing_imagefolder_root_names_the_path(tmp_path: Path) -> None:
    root = tmp_path / "absent"
    spec = DatasetSpec(name="imagefolder", root=root)
    with pytest.raises(DataError, match=re.escape(str(root))):
        load_dataset(spec, train=True)
    with pytest.raises(DataError, match=re.escape(str(root))):
        _ = spec.num_classes


def test_shard_keeps_labels_and_ids_consistent() -> None:
    base = load_dataset(DatasetSpec(name="digits"), train=True)
    shard = Shard(base, [10, 3, 7, 100])
    assert shard.targets.tolist() == base.targets[[10, 3, 7, 100]].tolist()
    assert shard.sample_ids.tolist() == [10, 3, 7, 100]
    assert (shard.num_classes, shard.in_channels, shard.classes) == (10, 1, base.classes)
    assert torch.equal(shard[1][0], base[3][0])
    assert shard[1][1] == base[3][1]
    nested = Shard(shard, [3, 0])
    assert nested.base is base
    assert nested.indices.tolist() == [100, 10]
    assert torch.equal(tensors(nested)[0], base.images([100, 10]))
    with pytest.raises(DataError, match="must lie in"):
        Shard(base, [len(base)])
    empty = Shard(base, [])
    assert tensors(empty)[0].shape == (0, 1, 8, 8)


def test_fingerprint_names_the_samples_not_their_order() -> None:
    base = load_dataset(DatasetSpec(name="digits"), train=True)
    shard = Shard(base, [1, 2, 3])
    assert fingerprint(shard) == fingerprint(Shard(base, [3, 1, 2]))
    assert fingerprint(shard) != fingerprint(Shard(base, [1, 2, 4]))
    assert len(fingerprint(shard)) == 64
    relabelled = InMemoryDataset(
        base.images([1, 2, 3]),
        (shard.targets + 1) % 10,
        identity=base.identity,
        num_classes=10,
        classes=base.classes,
        sample_ids=[1, 2, 3],
    )
    assert fingerprint(relabelled) != fingerprint(shard)


def test_in_memory_dataset_validates() -> None:
    images = torch.zeros(2, 1, 4, 4)
    with pytest.raises(DataError, match="labels must lie in"):
        InMemoryDataset(images, [0, 5], identity="t", num_classes=2, classes=["a", "b"])
    with pytest.raises(DataError, match="2 images for 3 labels"):
        InMemoryDataset(images, [0, 1, 1], identity="t", num_classes=2, classes=["a", "b"])
    with pytest.raises(DataError, match="float32"):
        InMemoryDataset(images.double(), [0, 1], identity="t", num_classes=2, classes=["a", "b"])
    ok = InMemoryDataset(images, [0, 1], identity="t", num_classes=2, classes=["a", "b"])
    with pytest.raises(IndexError):
        ok[2]
    assert ok[-1][1] == 1
