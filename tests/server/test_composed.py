"""The composed model's inputs and labels: test sets are read in the federation's label
space by class name, and inputs in its input spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tmc.common.data import InMemoryDataset
from tmc.common.data.inputs import DataSpec, InputSpec
from tmc.common.errors import DataError
from tmc.server.composed import FederationLabels, load_inputs

FEDERATION = DataSpec(classes=("cat", "dog", "eel"), input=InputSpec(channels=1, size=4))


def _dataset(classes: list[str], labels: list[int], side: int = 4) -> InMemoryDataset:
    images = (
        torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, side, side)
    )
    return InMemoryDataset(
        images.contiguous(),
        np.asarray(labels),
        identity="test",
        num_classes=len(classes),
        classes=classes,
    )


def test_labels_are_mapped_by_class_name() -> None:
    # The source orders its classes differently and has one the test split lacks ("fox").
    source = _dataset(["eel", "fox", "cat", "dog"], [0, 2, 3, 0])
    mapped = FederationLabels(source, FEDERATION, where="the test split")
    assert [mapped[i][1] for i in range(len(mapped))] == [2, 0, 1, 2]
    assert torch.equal(mapped[1][0], source[1][0])


def test_a_class_the_federation_does_not_know_is_refused() -> None:
    source = _dataset(["cat", "fox"], [0, 1])
    with pytest.raises(
        DataError, match=r"the test split has classes the federation does not know: \['fox'\]"
    ):
        FederationLabels(source, FEDERATION, where="the test split")


def test_images_of_another_shape_are_refused() -> None:
    with pytest.raises(DataError, match=r"\(1, 5, 5\).*\(1, 4, 4\)"):
        FederationLabels(_dataset(["cat"] * 1 + ["dog"], [0, 1], side=5), FEDERATION, where="x")


def test_inputs_follow_the_input_spec(tmp_path: Path) -> None:
    spec = InputSpec(channels=3, size=6, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(
        image
    )
    batch = load_inputs(image, spec)
    assert batch.shape == (1, 3, 6, 6)
    array = tmp_path / "b.npy"
    np.save(array, np.ones((3, 6, 6), dtype=np.float64))
    assert load_inputs(array, spec).dtype == torch.float32
    np.save(array, np.ones((6, 6, 3), dtype=np.float32))
    with pytest.raises(DataError, match=r"shape \(1, 6, 6, 3\)"):
        load_inputs(array, spec)
