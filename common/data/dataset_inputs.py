"""The :class:`~common.data.inputs.DataSpec` a federation gets from its server's dataset:
class names in label order, and how images are prepared (channels, size, normalisation).

``digits`` is scikit-learn's: ten classes named ``"0"``…``"9"``, one 8×8 channel in [0, 1],
ink high (an image file is inverted on the way in); ``mnist5k`` the same at 28×28, not
inverted (MNIST's images are light on dark). CIFAR uses its own statistics, an
ImageFolder ImageNet's (the usual choice for ImageNet-pre-trained backbones).
"""

from __future__ import annotations

from collections.abc import Sequence

from tmc.common.data.datasets import load_dataset
from tmc.common.data.inputs import DataSpec, InputSpec, folder_input
from tmc.common.data.spec import DatasetSpec
from tmc.common.data.torchvision_sources import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
)
from tmc.common.errors import ConfigError

DIGITS_INPUT = InputSpec(channels=1, size=8, invert=True)
DIGITS_CLASSES = tuple(str(digit) for digit in range(10))


def dataset_data_spec(
    spec: DatasetSpec,
    *,
    classes: Sequence[str] | None = None,
    channels: int | None = None,
) -> DataSpec:
    """The label space and input spec of ``spec``'s data. For image folders, ``classes``
    gives the label space (its order is the label order; default: the folder's class
    folders) and ``channels`` the input channels (default 3). CIFAR's class names are read
    from its files (they must be present)."""
    if (channels is not None or classes) and spec.name != "imagefolder":
        raise ConfigError(
            f"class-names and in-channels apply to imagefolder data; {spec.name!r} has its own"
        )
    if spec.name == "digits":
        return DataSpec(classes=DIGITS_CLASSES, input=DIGITS_INPUT)
    if spec.name == "mnist5k":  # MNIST's convention: light ink on a dark ground, in [0, 1]
        return DataSpec(classes=DIGITS_CLASSES, input=InputSpec(channels=1, size=28))
    if spec.name == "imagefolder":
        names = tuple(classes) if classes else tuple(spec.class_folders())
        return DataSpec(
            classes=names, input=folder_input(channels=channels or 3, size=spec.input_size)
        )
    if spec.name not in ("cifar10", "cifar100"):
        raise ConfigError(f"no input spec is defined for dataset {spec.name!r}")
    # CIFAR's class names are read from its files.
    cifar10 = spec.name == "cifar10"
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if cifar10 else (CIFAR100_MEAN, CIFAR100_STD)
    names = tuple(load_dataset(spec, train=False).classes)
    return DataSpec(classes=names, input=InputSpec(channels=3, size=32, mean=mean, std=std))


__all__ = ["DIGITS_CLASSES", "DIGITS_INPUT", "dataset_data_spec"]
