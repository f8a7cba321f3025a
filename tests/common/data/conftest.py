"""Small on-disk datasets written by the tests: fake CIFAR batches and PNG class folders."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100

CIFAR_TRAIN_PER_BATCH = 6
CIFAR_TEST_SIZE = 5


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_pickle(path: Path, payload: dict[str, object]) -> str:
    path.write_bytes(pickle.dumps(payload, protocol=2))
    return _md5(path)


def _batch(rng: np.random.Generator, size: int, num_classes: int, label_key: str) -> dict:
    data = rng.integers(0, 256, size=(size, 3 * 32 * 32), dtype=np.uint8)
    return {"data": data, label_key: [int(v) for v in rng.integers(0, num_classes, size)]}


def write_fake_cifar10(root: Path) -> dict[str, str]:
    """torchvision's ``cifar-10-batches-py`` layout, 5×6 train and 5 test images; md5s."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    md5s = {}
    for name, _ in CIFAR10.train_list:
        md5s[name] = _write_pickle(folder / name, _batch(rng, CIFAR_TRAIN_PER_BATCH, 10, "labels"))
    md5s["test_batch"] = _write_pickle(
        folder / "test_batch", _batch(rng, CIFAR_TEST_SIZE, 10, "labels")
    )
    names = [f"class{i}" for i in range(10)]
    md5s["batches.meta"] = _write_pickle(folder / "batches.meta", {"label_names": names})
    return md5s


def write_fake_cifar100(root: Path) -> dict[str, str]:
    """torchvision's ``cifar-100-python`` layout with 12 train and 5 test images; md5s."""
    folder = root / CIFAR100.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    md5s = {
        "train": _write_pickle(folder / "train", _batch(rng, 12, 100, "fine_labels")),
        "test": _write_pickle(folder / "test", _batch(rng, CIFAR_TEST_SIZE, 100, "fine_labels")),
    }
    names = [f"fine{i}" for i in range(100)]
    md5s["meta"] = _write_pickle(folder / "meta", {"fine_label_names": names})
    return md5s


def trust_fake_cifar(
    monkeypatch: pytest.MonkeyPatch, source: type[CIFAR10], md5s: dict[str, str]
) -> None:
    """Point torchvision's md5 table at the fake files (its own check still runs)."""
    monkeypatch.setattr(source, "train_list", [[n, md5s[n]] for n, _ in source.train_list])
    monkeypatch.setattr(source, "test_list", [[n, md5s[n]] for n, _ in source.test_list])
    meta = dict(source.meta)
    meta["md5"] = md5s[meta["filename"]]
    monkeypatch.setattr(source, "meta", meta)


@pytest.fixture
def fake_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cifar"
    trust_fake_cifar(monkeypatch, CIFAR10, write_fake_cifar10(root))
    return root


@pytest.fixture
def fake_cifar100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cifar100"
    trust_fake_cifar(monkeypatch, CIFAR100, write_fake_cifar100(root))
    return root


@pytest.fixture
def untrusted_cifar10(tmp_path: Path) -> Path:
    """Fake CIFAR-10 files whose md5s do not match torchvision's table (as if corrupted)."""
    root = tmp_path / "cifar-bad"
    write_fake_cifar10(root)
    return root


def write_png(path: Path, rng: np.random.Generator, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


ImageTree = Callable[[dict[str, int]], Path]


@pytest.fixture
def image_tree(tmp_path: Path) -> ImageTree:
    """``make({"train/cat": 3, ...})`` writes that many PNGs per folder; returns the root."""

    def make(counts: dict[str, int]) -> Path:
        root = tmp_path / "images"
        root.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        for folder, count in counts.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                write_png(root / folder / f"img{i}.png", rng)
        return root

    return make
