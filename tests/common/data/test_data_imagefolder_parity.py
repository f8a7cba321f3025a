"""The image-folder scan against torchvision's own (``datasets.folder``), on a generated
folder with the cases that tell scans apart: nested folders next to files, upper-case
extensions, files that are not images, a symlinked folder. The one deliberate difference:
hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are never data here."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from tests.images import write_images
from tmc.common.data.folders import list_class_dirs
from tmc.common.data.imagefolder import IMAGE_EXTENSIONS, list_images


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    write_images(root, {"cat": 3, "dog": 2, "bird": 1})
    write_images(root / "cat" / "indoor", {"horse": 2}, seed=1)  # nested, sorts before files
    write_images(root / "cat" / "indoor2", {"fish": 1}, seed=2)  # a name that extends another
    # a file whose name sorts after the nested folder's: torchvision lists a folder's own
    # files before its subfolders' (it sorts the walk by folder path)
    (root / "cat" / "zebra.png").write_bytes((root / "cat" / "0.png").read_bytes())
    (root / "dog" / "UPPER.PNG").write_bytes((root / "dog" / "0.png").read_bytes())
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / "Z.JpEg").write_bytes((root / "dog" / "0.png").read_bytes())
    # a linked folder, inside the silo's folder (links leading out are refused: see
    # test_data_folder_hostile); its hidden home is not listed itself
    write_images(root / ".store", {"fish": 2}, seed=3)
    (root / "bird" / "linked").symlink_to(root / ".store" / "fish")
    # hidden entries: torchvision lists them, this project does not
    write_images(root / "cat" / ".ipynb_checkpoints", {"horse": 1}, seed=4)
    (root / "cat" / ".hidden.png").write_bytes((root / "cat" / "0.png").read_bytes())
    write_images(root / ".trash", {"dog": 1}, seed=5)
    return root


def _visible(path: str) -> bool:
    return not any(part.startswith(".") for part in Path(path).parts)


def test_the_extensions_are_torchvisions() -> None:
    assert IMAGE_EXTENSIONS == IMG_EXTENSIONS


def test_class_folders_match_torchvision(folder: Path) -> None:
    classes, _ = find_classes(str(folder))
    assert ".trash" in classes  # the fixture's hidden folder is there to be skipped
    assert list_class_dirs(folder) == [c for c in classes if not c.startswith(".")]


def test_the_image_listing_matches_make_dataset(folder: Path) -> None:
    classes = list_class_dirs(folder)
    theirs = make_dataset(str(folder), {name: i for i, name in enumerate(classes)}, IMG_EXTENSIONS)
    expected = [(Path(path), label) for path, label in theirs if _visible(path)]
    assert len(expected) < len(theirs)  # hidden files were there, and are left out
    ours = list_images(folder, classes)
    assert ours == expected
    # the cases are really there
    names = {path.name for path, _ in ours}
    assert {"UPPER.PNG", "Z.JpEg", "zebra.png"} <= names
    assert "notes.txt" not in names
    assert any("linked" in path.parts for path, _ in ours)
    assert any("indoor" in path.parts for path, _ in ours)
