"""One entry point from a :class:`DatasetSpec` to a :class:`LabeledDataset`."""

from __future__ import annotations

from common.data.base import LabeledDataset
from common.data.digits import load_digits_split
from common.data.imagefolder import ImageFolderDataset
from common.data.spec import DatasetSpec
from common.data.torchvision_sources import load_cifar
from common.errors import DataError


def load_dataset(spec: DatasetSpec, *, train: bool) -> LabeledDataset:
    """The train or test split of ``spec``'s source; a DataError if it cannot be read."""
    dataset: LabeledDataset
    if spec.name == "digits":
        dataset = load_digits_split(train=train)
    elif spec.root is None:  # pragma: no cover - DatasetSpec requires root for the others
        raise DataError(f"dataset {spec.name!r} needs a root folder")
    elif spec.name == "imagefolder":
        dataset = ImageFolderDataset(spec.root, train=train, size=spec.input_size)
    else:
        dataset = load_cifar(spec.name, spec.root, train=train, download=spec.download)
    if dataset.num_classes != spec.num_classes:
        raise DataError(
            f"{dataset.identity} has {dataset.num_classes} classes, {spec.name!r} must have "
            f"{spec.num_classes}"
        )
    return dataset
