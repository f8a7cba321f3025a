"""CIFAR-10 and CIFAR-100 through torchvision, normalised, without augmentation.

torchvision parses the pickled batches and checks their md5; the images are then kept as
uint8 (a float copy of CIFAR would be ~600 MB) and normalised when read, with the same
arithmetic as ``ToTensor`` + ``Normalize``, so reading one image or a batch agrees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from tmc.common.data.base import LabeledDataset, as_index_array
from tmc.common.errors import DataError

# Standard per-channel statistics of the train splits.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class UInt8ImageDataset(LabeledDataset):
    """uint8 HxWxC images normalised per channel on read: ``(x / 255 - mean) / std``."""

    def __init__(
        self,
        pixels: npt.NDArray[np.uint8],
        targets: npt.ArrayLike,
        *,
        identity: str,
        classes: list[str],
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        if pixels.ndim != 4 or pixels.dtype != np.uint8 or pixels.shape[3] != len(mean):
            raise DataError(f"{identity}: expected uint8 (N, H, W, {len(mean)}) pixels")
        height, width, channels = pixels.shape[1:]
        super().__init__(
            identity=identity,
            targets=targets,
            num_classes=len(classes),
            classes=classes,
            image_shape=(int(channels), int(height), int(width)),
        )
        if pixels.shape[0] != len(self.targets):
            raise DataError(f"{identity}: {pixels.shape[0]} images for {len(self.targets)} labels")
        self.pixels = pixels
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def image(self, index: int) -> torch.Tensor:
        return self.images(np.array([index], dtype=np.int64))[0]

    def images(self, indices: npt.ArrayLike) -> torch.Tensor:
        positions = as_index_array(indices, what="image indices")
        batch = torch.from_numpy(self.pixels[positions]).permute(0, 3, 1, 2).float().div(255)
        return ((batch - self._mean) / self._std).contiguous()


def load_cifar(name: str, root: Path, *, train: bool, download: bool) -> UInt8ImageDataset:
    """CIFAR-10 (``name="cifar10"``) or CIFAR-100 from ``root``, as torchvision lays it out.

    Downloads only when ``download`` is true; otherwise missing or corrupted files are a
    DataError saying where they were looked for and how to provide them.
    """
    # Imported here: torchvision takes seconds to import and most processes never read CIFAR.
    from torchvision.datasets import CIFAR10, CIFAR100

    source = {"cifar10": CIFAR10, "cifar100": CIFAR100}.get(name)
    if source is None:
        raise DataError(f"unknown CIFAR variant {name!r} (expected cifar10 or cifar100)")
    folder = root / source.base_folder
    url = source.url
    if not download and not folder.is_dir():
        raise DataError(
            f"{name}: no {source.base_folder}/ under {root} (looked for {folder}); set "
            f"download=true to fetch it from {url}, or extract {source.filename} into {root}"
        )
    try:
        dataset = source(str(root), train=train, download=download)
    except RuntimeError as error:  # torchvision's "not found or corrupted"
        raise DataError(
            f"{name}: the files in {folder} are incomplete or corrupted (md5 check failed: "
            f"{error}); re-extract {source.filename} there, or set download=true"
        ) from error
    except OSError as error:  # a failed download, or unreadable files
        raise DataError(f"{name}: cannot read or download into {root}: {error}") from error
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    return UInt8ImageDataset(
        np.ascontiguousarray(dataset.data, dtype=np.uint8),
        np.asarray(dataset.targets, dtype=np.int64),
        identity=f"{name}:{'train' if train else 'test'}",
        classes=[str(label) for label in dataset.classes],
        mean=mean,
        std=std,
    )
