"""Splits of label arrays: determinism, disjointness, coverage and each split's guarantee."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmc.common.data import (
    SplitSpec,
    label_histogram,
    public_private_split,
    silo_classes,
    split_increments,
    split_silos,
)
from tmc.common.errors import ConfigError, DataError

SPLITS = [SplitSpec.parse(text) for text in ("class", "iid", "dirichlet:0.5")]


def _labels(num_classes: int = 10, per_class: int = 30, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels).astype(np.int64)


def _assert_partition(parts: list[np.ndarray], indices: np.ndarray) -> None:
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0), "sorted and without repeats"
    joined = np.concatenate(parts)
    assert len(joined) == len(indices), "disjoint"
    assert np.array_equal(np.sort(joined), np.sort(indices)), "covers the indices"


def _skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance of each silo's label mix from the global one."""
    overall = np.bincount(labels, minlength=10) / len(labels)
    mixes = [np.bincount(labels[p], minlength=10) / len(p) for p in parts]
    return float(np.mean([0.5 * np.abs(mix - overall).sum() for mix in mixes]))


@pytest.mark.parametrize("split", SPLITS, ids=str)
def test_split_silos_is_deterministic_and_a_partition(split: SplitSpec) -> None:
    labels = _labels()
    indices = np.arange(0, len(labels), 2)  # a subset, as the private part would be
    first = split_silos(labels, indices, num_silos=4, split=split, seed=3)
    again = split_silos(labels, indices, num_silos=4, split=split, seed=3)
    other = split_silos(labels, indices, num_silos=4, split=split, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    _assert_partition(first, indices)
    assert all(len(part) > 0 for part in first)


def test_class_split_gives_disjoint_near_equal_class_blocks() -> None:
    labels = _labels()
    parts = split_silos(labels, np.arange(len(labels)), num_silos=3, split=SPLITS[0], seed=0)
    blocks = [silo_classes(labels, part) for part in parts]
    assert sorted(len(block) for block in blocks) == [3, 3, 4]
    assert sorted(c for block in blocks for c in block) == list(range(10))
    for part, block in zip(parts, blocks, strict=True):
        assert len(part) == 30 * len(block), "a silo holds every sample of its classes"
    orders = {
        tuple(
            tuple(silo_classes(labels, p))
            for p in split_silos(
                labels, np.arange(len(labels)), num_silos=3, split=SPLITS[0], seed=seed
            )
        )
        for seed in range(5)
    }
    assert len(orders) > 1, "the class order depends on the seed"


def test_class_split_with_more_silos_than_classes_is_a_data_error() -> None:
    labels = _labels(num_classes=3)
    with pytest.raises(DataError, match=r"4 silos but only 3 classes"):
        split_silos(labels, np.arange(len(labels)), num_silos=4, split=SPLITS[0], seed=0)


def test_iid_split_is_balanced_and_stratified() -> None:
    labels = _labels(per_class=31)
    parts = split_silos(labels, np.arange(len(labels)), num_silos=7, split=SPLITS[1], seed=1)
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    counts = np.array([label_histogram(labels, part, 10) for part in parts])
    assert np.all(counts.max(axis=0) - counts.min(axis=0) <= 1)


def test_dirichlet_skew_grows_as_beta_shrinks() -> None:
    labels = _labels(per_class=100)
    indices = np.arange(len(labels))
    skews = []
    for beta in (100.0, 1.0, 0.1):
        split = SplitSpec(kind="dirichlet", beta=beta)
        parts = split_silos(labels, indices, num_silos=5, split=split, seed=0)
        _assert_partition(parts, indices)
        skews.append(_skew(labels, parts))
    assert skews[0] < 0.1 < skews[1] < skews[2]


def test_dirichlet_that_cannot_fill_every_silo_is_a_data_error() -> None:
    labels = np.repeat([0, 1], 10)
    split = SplitSpec(kind="dirichlet", beta=1e-3)
    with pytest.raises(DataError, match="larger beta or fewer silos"):
        split_silos(labels, np.arange(20), num_silos=20, split=split, seed=0)


def test_more_silos_than_samples_is_a_data_error() -> None:
    with pytest.raises(DataError, match="cannot fill 5 silos"):
        split_silos(np.zeros(3, np.int64), np.arange(3), num_silos=5, split=SPLITS[1], seed=0)


def test_bad_indices_are_data_errors() -> None:
    labels = _labels()
    with pytest.raises(DataError, match="repeat"):
        split_silos(labels, [0, 0, 1], num_silos=1, split=SPLITS[1], seed=0)
    with pytest.raises(DataError, match="must lie in"):
        split_silos(labels, [0, 999], num_silos=1, split=SPLITS[1], seed=0)
    with pytest.raises(DataError, match="integers"):
        split_silos(labels, np.array([0.5]), num_silos=1, split=SPLITS[1], seed=0)
    with pytest.raises(ConfigError, match="seed"):
        split_silos(labels, [0, 1], num_silos=1, split=SPLITS[1], seed=-1)


def test_increments_are_stratified_and_deterministic() -> None:
    labels = _labels(per_class=20)
    silo = np.flatnonzero(labels < 4)
    parts = split_increments(silo, labels, num_increments=3, seed=5)
    _assert_partition(parts, silo)
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    counts = np.array([label_histogram(labels, part, 10) for part in parts])
    assert np.all(counts.max(axis=0) - counts.min(axis=0) <= 1)
    assert np.all(counts[:, :4] >= 6), "every increment holds every class of the silo"
    again = split_increments(silo, labels, num_increments=3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = split_increments(silo, labels, num_increments=3, seed=6)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_too_few_samples_for_the_increments_is_a_data_error() -> None:
    with pytest.raises(DataError, match="2 samples cannot be split into 3 increments"):
        split_increments([0, 1], np.zeros(5, np.int64), num_increments=3, seed=0)


def test_public_split_is_stratified_and_deterministic() -> None:
    labels = _labels(per_class=50)
    public, private = public_private_split(labels, fraction=0.2, seed=0)
    _assert_partition([public, private], np.arange(len(labels)))
    assert label_histogram(labels, public, 10) == [10] * 10
    again, _ = public_private_split(labels, fraction=0.2, seed=0)
    other, _ = public_private_split(labels, fraction=0.2, seed=1)
    assert np.array_equal(public, again)
    assert not np.array_equal(public, other)
    none, everything = public_private_split(labels, fraction=0.0, seed=0)
    assert len(none) == 0
    assert len(everything) == len(labels)


def test_public_split_with_classes_draws_only_from_them() -> None:
    labels = _labels(per_class=50)
    public, private = public_private_split(labels, fraction=0.5, seed=0, classes=(0, 1, 2, 3, 4))
    _assert_partition([public, private], np.arange(len(labels)))
    assert label_histogram(labels, public, 10) == [25] * 5 + [0] * 5
    assert label_histogram(labels, private, 10) == [25] * 5 + [50] * 5
    whole, _ = public_private_split(labels, fraction=0.5, seed=0, classes=tuple(range(10)))
    assert np.array_equal(whole, public_private_split(labels, fraction=0.5, seed=0)[0])


def test_public_split_keeps_a_private_sample_of_every_class() -> None:
    labels = np.array([0, 1, 1, 2, 2, 2], dtype=np.int64)
    _, private = public_private_split(labels, fraction=0.9, seed=0)
    assert silo_classes(labels, private) == [0, 1, 2]


def test_public_split_errors() -> None:
    labels = _labels()
    with pytest.raises(DataError, match=r"\[11\] have no samples"):
        public_private_split(labels, fraction=0.2, seed=0, classes=(1, 11))
    with pytest.raises(ConfigError, match="fraction"):
        public_private_split(labels, fraction=1.0, seed=0)


def test_silo_classes_and_histogram() -> None:
    labels = np.array([3, 1, 3, 0], dtype=np.int64)
    assert silo_classes(labels, [0, 2, 1]) == [1, 3]
    assert label_histogram(labels, [0, 1, 2], 4) == [0, 1, 0, 2]
    with pytest.raises(DataError, match="outside"):
        label_histogram(labels, [0], 3)


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(0, 5), min_size=6, max_size=80),
    num_silos=st.integers(1, 6),
    split=st.sampled_from(["class", "iid", "dirichlet:1.0"]),
    seed=st.integers(0, 2**32),
)
def test_any_successful_split_is_a_partition(
    labels: list[int], num_silos: int, split: str, seed: int
) -> None:
    targets = np.array(labels, dtype=np.int64)
    try:
        parts = split_silos(
            targets,
            np.arange(len(targets)),
            num_silos=num_silos,
            split=SplitSpec.parse(split),
            seed=seed,
        )
    except DataError:
        return  # too few classes or samples for this many silos: refused, never wrong
    assert len(parts) == num_silos
    assert all(len(part) > 0 for part in parts)
    _assert_partition(parts, np.arange(len(targets)))
