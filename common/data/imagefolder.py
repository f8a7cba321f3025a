"""Images in class folders (``root/train/<class>/*.png``), read the way ImageFolder reads them.

The label space is the train split's class folders; the test split is read with the same
class order, so label ``i`` means the same class in both. Files are listed with
torchvision's ``make_dataset`` and decoded with its ``default_loader`` (RGB), but the
dataset itself holds only paths and a transform, so it pickles into DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from common.data.base import LabeledDataset
from common.data.folders import list_class_dirs, split_dir, train_classes
from common.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolderDataset(LabeledDataset):
    """Decoded on read: resized to a square ``size``, ``ToTensor``, ImageNet normalisation."""

    def __init__(self, root: Path, *, train: bool, size: int) -> None:
        # Imported here: torchvision takes seconds to import and silo nodes that read an
        # exported folder never need it.
        from torchvision import transforms
        from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

        classes = train_classes(root)
        directory = split_dir(root, train=train)
        extra = sorted(set(list_class_dirs(directory)) - set(classes))
        if extra:
            raise DataError(f"{directory} has class folders the train split lacks: {extra}")
        try:
            # allow_empty: a test split may lack classes; train is checked for them below.
            samples = make_dataset(
                str(directory),
                {name: i for i, name in enumerate(classes)},
                extensions=IMG_EXTENSIONS,
                allow_empty=True,
            )
        except (FileNotFoundError, ValueError) as error:
            raise DataError(f"cannot read image folder {directory}: {error}") from error
        if not samples:
            raise DataError(f"image folder {directory} holds no images (.png, .jpg, ...)")
        targets = [label for _, label in samples]
        if train:
            counts = torch.bincount(torch.tensor(targets), minlength=len(classes))
            empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
            if empty:
                raise DataError(f"{directory}: class folders without images: {empty}")
        # The folder's name, not its path: the same data mounted elsewhere keeps its fingerprints.
        super().__init__(
            identity=f"imagefolder[{root.resolve().name}]:{'train' if train else 'test'}",
            targets=targets,
            num_classes=len(classes),
            classes=classes,
            image_shape=(3, size, size),
        )
        self.paths = [path for path, _ in samples]
        self.transform = transforms.Compose(
            [
                transforms.Resize((size, size)),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def image(self, index: int) -> torch.Tensor:
        from torchvision.datasets.folder import default_loader

        path = self.paths[index]
        try:
            image = self.transform(default_loader(path))
        except OSError as error:  # a truncated or non-image file
            raise DataError(f"cannot decode image {path}: {error}") from error
        if not isinstance(image, torch.Tensor):  # pragma: no cover - ToTensor guarantees it
            raise DataError(f"image {path} did not decode to a tensor")
        return image
