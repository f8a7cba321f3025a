"""One entry point from a :class:`DatasetSpec` to a :class:`LabeledDataset`."""

from __future__ import annotations

from tmc.common.data.base import LabeledDataset, Relabeled
from tmc.common.data.digits import load_digits_split
from tmc.common.data.imagefolder import load_image_folder
from tmc.common.data.inputs import DataSpec, folder_input
from tmc.common.data.mnist5k import load_mnist5k_split
from tmc.common.data.spec import DatasetSpec
from tmc.common.data.torchvision_sources import load_cifar
from tmc.common.errors import DataError


def load_dataset(spec: DatasetSpec, *, train: bool) -> LabeledDataset:
    """The train or test split of ``spec``'s source; a DataError if it cannot be read."""
    dataset: LabeledDataset
    if spec.name == "digits":
        dataset = load_digits_split(train=train)
    elif spec.name == "mnist5k":
        dataset = load_mnist5k_split(train=train)
    elif spec.root is None:  # pragma: no cover - DatasetSpec requires root for the others
        raise DataError(f"dataset {spec.name!r} needs a root folder")
    elif spec.name == "imagefolder":
        input_spec = folder_input(channels=3, size=spec.input_size)
        dataset = load_image_folder(spec.root, train=train, input_spec=input_spec)
    else:
        dataset = load_cifar(spec.name, spec.root, train=train, download=spec.download)
    if dataset.num_classes != spec.num_classes:
        raise DataError(
            f"{dataset.identity} has {dataset.num_classes} classes, {spec.name!r} must have "
            f"{spec.num_classes}"
        )
    return dataset


def in_label_space(dataset: LabeledDataset, data: DataSpec, *, where: str) -> LabeledDataset:
    """``dataset`` with its labels mapped, by class name, onto ``data``'s label space (the
    dataset itself when they already agree); a DataError names classes ``data`` lacks."""
    if tuple(dataset.classes) == data.classes:
        return dataset
    present = sorted({int(c) for c in dataset.targets})
    names = [dataset.classes[c] for c in present]
    unknown = data.unknown(names)
    if unknown:
        raise DataError(
            f"{where} has classes the federation does not know: {unknown[:10]} "
            f"(the federation's classes: {list(data.classes)[:20]})"
        )
    mapping = [data.classes.index(n) if n in data.classes else -1 for n in dataset.classes]
    return Relabeled(dataset, mapping, data.classes)


def load_test_set(spec: DatasetSpec, data: DataSpec) -> LabeledDataset:
    """The test split of ``spec`` in the federation's label space and input spec (image
    folders are read with the federation's channels and size)."""
    if spec.name == "imagefolder" and spec.root is not None:
        return load_image_folder(
            spec.root, train=False, input_spec=data.input, classes=data.classes
        )
    dataset = load_dataset(spec, train=False)
    if dataset.image_shape != data.input.shape:
        raise DataError(
            f"{dataset.identity} images are {dataset.image_shape}, the federation's input is "
            f"{data.input.shape}"
        )
    return in_label_space(dataset, data, where=dataset.identity)
