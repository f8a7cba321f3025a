"""A silo's own image folder: layouts, label mapping by name, channels, held-out test
images, the fingerprint that notices changed data; and the input spec that prepares them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.images import write_images
from tmc.common.data import (
    DataSpec,
    InputSpec,
    fingerprint,
    folder_input,
    prepare_image,
    scan_silo_folder,
)
from tmc.common.errors import DataError
from tmc.common.federation import data_problems

FEDERATION = DataSpec(
    classes=("bird", "cat", "dog", "fish"), input=folder_input(channels=3, size=8)
)


def test_flat_folder_is_mapped_onto_the_federation_by_class_name(tmp_path: Path) -> None:
    write_images(tmp_path / "silo", {"dog": 3, "cat": 2})
    folder = scan_silo_folder(tmp_path / "silo")
    assert folder.class_names == ("cat", "dog")  # the silo's own order
    assert folder.channels == (3,)
    (train,) = folder.increment_sets(FEDERATION)
    assert folder.test_set(FEDERATION) is None
    assert train.classes == list(FEDERATION.classes)
    assert sorted(train.targets.tolist()) == [1, 1, 2, 2, 2]  # cat=1, dog=2 federation-wide
    image, label = train[0]
    assert image.shape == (3, 8, 8)
    assert FEDERATION.classes[label] == Path(train.paths[0]).parent.name


def test_train_and_test_folders_and_a_held_out_fraction(tmp_path: Path) -> None:
    write_images(tmp_path / "split" / "train", {"fish": 4, "bird": 4})
    write_images(tmp_path / "split" / "test", {"bird": 1})
    folder = scan_silo_folder(tmp_path / "split")
    (train,), test = folder.increment_sets(FEDERATION), folder.test_set(FEDERATION)
    assert (len(train), len(test or [])) == (8, 1)
    assert test is not None
    assert test.targets.tolist() == [0]

    write_images(tmp_path / "flat", {"cat": 10, "dog": 5})
    held = scan_silo_folder(tmp_path / "flat", test_fraction=0.2)
    assert (len(held.train.files), len(held.test.files)) == (12, 3)  # 2 cats and 1 dog
    again = scan_silo_folder(tmp_path / "flat", test_fraction=0.2)
    assert again.test == held.test, "the same folder always holds out the same images"
    assert not set(held.train.files) & set(held.test.files)


def test_channels_are_read_from_the_files(tmp_path: Path) -> None:
    write_images(tmp_path / "gray", {"cat": 2}, mode="L")
    folder = scan_silo_folder(tmp_path / "gray")
    assert folder.channels == (1,)
    counts = folder.train.counts(len(folder.class_names))
    problems = data_problems(
        FEDERATION,
        class_names=folder.class_names,
        class_counts=counts,
        channels=folder.channels,
        image_size=None,
    )
    assert problems == [
        "images are grayscale, 1 channel, but the federation's input has 3 channel(s) "
        "(RGB 8×8, normalised)"
    ]


def test_problems_name_unknown_classes_and_empty_silos() -> None:
    unknown = data_problems(
        FEDERATION,
        class_names=("cat", "horse"),
        class_counts=(2, 3),
        channels=(3,),
        image_size=None,
    )
    assert unknown == [
        "class(es) 'horse' are not in the federation's label space ('bird', 'cat', 'dog', 'fish')"
    ]
    empty = data_problems(FEDERATION, class_names=(), class_counts=(), channels=(), image_size=None)
    assert empty == ["the silo holds no training images"]
    ok = data_problems(
        FEDERATION, class_names=("cat",), class_counts=(1,), channels=(3,), image_size=None
    )
    assert ok == []
    sized = data_problems(
        FEDERATION, class_names=("cat",), class_counts=(1,), channels=(3,), image_size=32
    )
    assert sized == ["images are stored at 32×32 px, the federation's input is 8×8"]


def test_the_fingerprint_changes_when_the_files_do(tmp_path: Path) -> None:
    write_images(tmp_path / "silo", {"cat": 2, "dog": 2})
    (before,) = scan_silo_folder(tmp_path / "silo").increment_sets(FEDERATION)
    moved = tmp_path / "elsewhere"
    (tmp_path / "silo").rename(moved)
    moved.rename(tmp_path / "silo")
    (same,) = scan_silo_folder(tmp_path / "silo").increment_sets(FEDERATION)
    assert fingerprint(same) == fingerprint(before)
    write_images(tmp_path / "silo", {"cat": 3}, seed=9)  # one more cat, the others rewritten
    (after,) = scan_silo_folder(tmp_path / "silo").increment_sets(FEDERATION)
    assert fingerprint(after) != fingerprint(before)


def test_increment_folders_grow_without_changing_what_was_contributed(tmp_path: Path) -> None:
    root = tmp_path / "silo"
    write_images(root / "increments" / "2026-01", {"cat": 4, "dog": 4})
    write_images(root / "test", {"cat": 1})
    first = scan_silo_folder(root)
    assert [inc.name for inc in first.increments] == ["2026-01"]
    (jan,) = first.increment_sets(FEDERATION)
    assert sorted(jan.targets.tolist()) == [1] * 4 + [2] * 4
    test = first.test_set(FEDERATION)
    assert test is not None
    assert test.targets.tolist() == [1]

    # A new month arrives, with a class the silo had not seen: a second increment.
    write_images(root / "increments" / "2026-02", {"bird": 3, "cat": 2}, seed=5)
    grown = scan_silo_folder(root)
    assert [inc.name for inc in grown.increments] == ["2026-01", "2026-02"]
    assert grown.class_names == ("bird", "cat", "dog")
    jan_again, feb = grown.increment_sets(FEDERATION)
    assert fingerprint(jan_again) == fingerprint(jan), "a new increment leaves the old one"
    assert sorted(feb.targets.tolist()) == [0, 0, 0, 1, 1]
    assert grown.train.counts(3) == (3, 6, 4)
    assert grown.digest != first.digest  # the folder as a whole did change

    # Changing a contributed increment changes its fingerprint (the server then refuses).
    write_images(root / "increments" / "2026-01", {"dog": 5}, seed=7)
    changed, _ = scan_silo_folder(root).increment_sets(FEDERATION)
    assert fingerprint(changed) != fingerprint(jan)


def test_held_out_images_are_chosen_per_increment(tmp_path: Path) -> None:
    root = tmp_path / "silo"
    write_images(root / "increments" / "a", {"cat": 10})
    held = scan_silo_folder(root, test_fraction=0.2)
    write_images(root / "increments" / "b", {"cat": 10}, seed=3)
    grown = scan_silo_folder(root, test_fraction=0.2)
    assert set(held.test.files) < set(grown.test.files), "the first increment's split stays"
    assert len(grown.test.files) == 4
    assert grown.increments[0].train == held.increments[0].train
    assert not set(grown.train.files) & set(grown.test.files)


def test_bad_increment_layouts_are_data_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "both" / "increments" / "a", {"cat": 1})
    write_images(tmp_path / "both" / "train", {"cat": 1})
    with pytest.raises(DataError, match="both increments/ and train/"):
        scan_silo_folder(tmp_path / "both")
    (tmp_path / "none" / "increments").mkdir(parents=True)
    with pytest.raises(DataError, match="no increment folders"):
        scan_silo_folder(tmp_path / "none")
    write_images(tmp_path / "empty" / "increments" / "a", {"cat": 1})
    (tmp_path / "empty" / "increments" / "b" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"increment folder .*b holds no images"):
        scan_silo_folder(tmp_path / "empty")


def test_bad_folders_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        scan_silo_folder(tmp_path / "absent")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class folders"):
        scan_silo_folder(tmp_path / "loose")
    write_images(tmp_path / "broken", {"cat": 1})
    (tmp_path / "broken" / "cat" / "x.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"x\.png"):
        scan_silo_folder(tmp_path / "broken")


def test_prepare_image_follows_the_input_spec() -> None:
    pixels = np.zeros((4, 4), dtype=np.uint8)
    pixels[0, 0] = 255
    image = Image.fromarray(pixels, "L")
    plain = prepare_image(image, InputSpec(channels=1, size=4))
    assert plain.shape == (1, 4, 4)
    assert float(plain[0, 0, 0]) == 1.0
    inverted = prepare_image(image, InputSpec(channels=1, size=4, invert=True))
    assert torch.equal(inverted, 1.0 - plain)
    normalised = prepare_image(image, InputSpec(channels=1, size=4, mean=(0.5,), std=(0.25,)))
    assert torch.allclose(normalised, (plain - 0.5) / 0.25)
    rgb = prepare_image(image, InputSpec(channels=3, size=2))
    assert rgb.shape == (3, 2, 2)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (("cat",), "at least 2"),
        (("cat", "cat"), "repeated"),
        (("cat", "a/b"), "invalid class names"),
        (("cat", " dog"), "invalid class names"),
    ],
)
def test_label_spaces_are_validated(classes: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataSpec(classes=classes, input=InputSpec(channels=3, size=8))


def test_input_specs_are_validated() -> None:
    with pytest.raises(ValueError, match="both mean and std"):
        InputSpec(channels=1, size=8, mean=(0.5,))
    with pytest.raises(ValueError, match="one value per channel"):
        InputSpec(channels=3, size=8, mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="positive"):
        InputSpec(channels=1, size=8, mean=(0.5,), std=(0.0,))
