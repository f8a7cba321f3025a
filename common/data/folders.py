"""Where an ImageFolder dataset keeps its splits and classes, read from the folder listing.

Shared by :class:`~common.data.spec.DatasetSpec` (to know the label space without decoding
a single image) and the loader, so both agree on the class order by construction.
"""

from __future__ import annotations

from pathlib import Path

from tmc.common.errors import DataError

TRAIN_DIR = "train"
TEST_DIR = "test"


def has_split_layout(root: Path) -> bool:
    """Whether ``root`` holds ``train/`` and/or ``test/`` rather than class folders."""
    return (root / TRAIN_DIR).is_dir() or (root / TEST_DIR).is_dir()


def split_dir(root: Path, *, train: bool) -> Path:
    """The folder holding the class folders of the train or test split.

    ``root/train`` and ``root/test`` when ``root/train`` exists; otherwise ``root`` itself is
    the train split and there is no test split (a :class:`DataError` says so).
    """
    if not root.is_dir():
        raise DataError(f"image folder root {root} does not exist or is not a directory")
    if has_split_layout(root):
        directory = root / (TRAIN_DIR if train else TEST_DIR)
        if not directory.is_dir():
            present, absent = (TEST_DIR, TRAIN_DIR) if train else (TRAIN_DIR, TEST_DIR)
            raise DataError(
                f"image folder {root} has a '{present}' folder but no '{absent}' folder "
                f"({directory})" + ("; add one to evaluate on a test split" if not train else "")
            )
        return directory
    if not train:
        raise DataError(
            f"image folder {root} has no test split: lay it out as {root}/{TRAIN_DIR}/<class>/ "
            f"and {root}/{TEST_DIR}/<class>/"
        )
    return root


def list_class_dirs(directory: Path) -> list[str]:
    """Sorted names of the class folders in ``directory`` (hidden folders are not classes)."""
    if not directory.is_dir():
        raise DataError(f"image folder {directory} does not exist or is not a directory")
    names = sorted(
        entry.name
        for entry in directory.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not names:
        raise DataError(f"image folder {directory} has no class folders (expected <class>/<image>)")
    return names


def train_classes(root: Path) -> list[str]:
    """The label space of an ImageFolder dataset: the class folders of its train split (of
    its test split when it has only one, as a server's test folder does)."""
    only_test = (root / TEST_DIR).is_dir() and not (root / TRAIN_DIR).is_dir()
    return list_class_dirs(split_dir(root, train=not only_test))
