"""scikit-learn's bundled 8x8 digits: the built-in dataset, in memory, never downloaded."""

from __future__ import annotations

import numpy as np
import torch

from tmc.common.data.base import InMemoryDataset

DIGITS_TEST_SIZE = 540
"""Fixed test size of the split below (1797 images: 1257 train, 540 test)."""

_SPLIT_STATE = 0  # the split is part of the dataset's definition, never a run's seed
_MAX_PIXEL = 16.0  # load_digits pixels are counts 0..16


def load_digits_split(*, train: bool) -> InMemoryDataset:
    """The train (1257) or test (540) images as float32 (1, 8, 8) in [0, 1].

    The split is stratified and fixed (``random_state=0``); indices are sorted so the
    samples keep scikit-learn's order within each split.
    """
    # Imported here: scikit-learn takes a second to import and silo nodes never need it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_SIZE,
        stratify=labels,
        random_state=_SPLIT_STATE,
    )
    chosen = np.sort(train_idx if train else test_idx)
    pixels = np.asarray(bunch.images, dtype=np.float32)[chosen] / _MAX_PIXEL
    return InMemoryDataset(
        torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(1),
        labels[chosen],
        identity=f"digits:{'train' if train else 'test'}",
        num_classes=10,
        classes=[str(digit) for digit in range(10)],
    )
