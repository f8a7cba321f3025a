"""Images in class folders (``root/train/<class>/*.png``), read the way ImageFolder reads them.

Files are listed like torchvision's ``make_dataset`` (class folders sorted, hidden entries
skipped, image extensions only), except that links are followed only inside the folder and
special files are refused, and without importing torchvision: a silo node starts a fresh
process per message (docs/notes/flower.md) and torchvision costs seconds.
Images are decoded on read by :func:`common.data.inputs.prepare_image`, so a dataset
holds only paths and pickles cheaply into DataLoader workers.

Labels are indices into a label space given by name: the train split's class folders by
default, or a federation's classes (a folder ``cat`` is label ``classes.index("cat")``
whatever the other folders are).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from tmc.common.data.base import LabeledDataset
from tmc.common.data.folder_walk import FolderWalker
from tmc.common.data.folders import list_class_dirs, split_dir, train_classes
from tmc.common.data.inputs import IMAGENET_MEAN, IMAGENET_STD, InputSpec, prepare_image, read_image
from tmc.common.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""torchvision's ``IMG_EXTENSIONS``, compared case-insensitively."""

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "is_image_name",
    "list_images",
    "load_image_folder",
]


def list_images(
    directory: Path, class_folders: Sequence[str], *, walker: FolderWalker | None = None
) -> list[tuple[Path, int]]:
    """``(file, position of its folder in class_folders)`` for every image under
    ``directory/<class>/`` (nested folders included), in ``make_dataset``'s order: folders
    by path (so a folder's own files, by name, come before its subfolders'). Links are
    followed only inside ``directory``, each file and folder is read once, and a special
    file named like an image is refused (see :mod:`common.data.folder_walk`). Pass the
    ``walker`` of an enclosing folder to list several splits of it as one."""
    walker = walker or FolderWalker(directory, is_image_name)
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(class_folders):
        folder = directory / name
        if folder.is_dir():
            # torchvision sorts the walk by the folder's path string, then each folder's files
            ordered = sorted(walker.files(folder), key=lambda p: (str(p.parent), p.name))
            samples.extend((path, index) for path in ordered)
    return samples


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the :data:`IMAGE_EXTENSIONS`."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


class ImageFolderDataset(LabeledDataset):
    """Image files with labels in ``classes``, prepared on read per ``input_spec``."""

    def __init__(
        self,
        paths: Sequence[Path],
        targets: Sequence[int],
        *,
        classes: Sequence[str],
        input_spec: InputSpec,
        identity: str,
    ) -> None:
        super().__init__(
            identity=identity,
            targets=list(targets),
            num_classes=len(classes),
            classes=classes,
            image_shape=input_spec.shape,
        )
        if len(paths) != len(self.targets):
            raise DataError(f"{identity}: {len(paths)} files for {len(self.targets)} labels")
        self.paths = list(paths)
        self.input_spec = input_spec

    def image(self, index: int) -> torch.Tensor:
        return prepare_image(read_image(self.paths[index]), self.input_spec)


def load_image_folder(
    root: Path,
    *,
    train: bool,
    input_spec: InputSpec,
    classes: Sequence[str] | None = None,
) -> ImageFolderDataset:
    """The train or test split of the image folder at ``root``, labelled by ``classes``
    (default: the train split's class folders). A class folder outside that label space,
    a split without images, or (train) a class without images is a DataError."""
    names = list(classes) if classes is not None else train_classes(root)
    directory = split_dir(root, train=train)
    extra = sorted(set(list_class_dirs(directory)) - set(names))
    if extra:
        what = "the train split lacks" if classes is None else "are not in the label space"
        raise DataError(f"{directory} has class folders {what}: {extra}")
    samples = list_images(directory, names)
    if not samples:
        raise DataError(f"image folder {directory} holds no images (.png, .jpg, ...)")
    if train and classes is None:
        counts = torch.bincount(torch.tensor([i for _, i in samples]), minlength=len(names))
        empty = [names[i] for i in range(len(names)) if counts[i] == 0]
        if empty:
            raise DataError(f"{directory}: class folders without images: {empty}")
    # The folder's name, not its path: the same data mounted elsewhere keeps its fingerprints.
    return ImageFolderDataset(
        [path for path, _ in samples],
        [label for _, label in samples],
        classes=names,
        input_spec=input_spec,
        identity=f"imagefolder[{root.resolve().name}]:{'train' if train else 'test'}",
    )
