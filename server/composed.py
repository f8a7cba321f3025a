"""Using the composed model: θ0 from the registry's spec, Δ from its current version.

The base is rebuilt on this machine from the spec (the built-in one from the local cache)
and must hash to the registry's θ0; a different θ0 would silently give other answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD
from common.data.spec import DatasetName
from common.data.torchvision_sources import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from common.errors import DataError, ModelError
from common.models import BaseModelSpec, MaterializedBase, materialize
from common.tangent import TangentModel
from server.registry import ModelVersion, Registry


@dataclass
class ComposedModel:
    """θ0 + Δ of one registry version, ready to evaluate or predict."""

    base: MaterializedBase
    model: TangentModel
    version: ModelVersion

    @classmethod
    def from_registry(cls, registry: Registry, version: int | None = None) -> ComposedModel:
        spec = BaseModelSpec.model_validate_json(registry.base.spec_json)
        base = materialize(spec)
        if base.sha256 != registry.base.sha256:
            raise ModelError(
                f"this machine builds θ0 {base.sha256[:12]}… from the registry's spec, but the "
                f"registry holds components of θ0 {registry.base.sha256[:12]}…"
            )
        chosen = registry.version(version)
        model = TangentModel(base.network, base.tangent_names)
        model.load_delta(dict(registry.composed_delta(chosen.number)))
        return cls(base=base, model=model.eval(), version=chosen)

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


NATIVE_SIZE: dict[DatasetName, int] = {
    "digits": 8,
    "cifar10": 32,
    "cifar100": 32,
    "imagefolder": 64,
}


def _normalisation(dataset: DatasetName) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if dataset == "cifar10":
        return CIFAR10_MEAN, CIFAR10_STD
    if dataset == "cifar100":
        return CIFAR100_MEAN, CIFAR100_STD
    if dataset == "imagefolder":
        return IMAGENET_MEAN, IMAGENET_STD
    return None


def load_inputs(
    path: Path, *, dataset: DatasetName, in_channels: int, size: int | None = None
) -> torch.Tensor:
    """A batch (N, C, H, W) from a ``.npy`` array (already preprocessed, (C, H, W) or
    (N, C, H, W)) or an image file prepared like the dataset's own images. ``digits``
    images are dark ink on a light background, inverted and resized to 8×8 like
    scikit-learn's digits."""
    if not path.is_file():
        raise DataError(f"input {path} does not exist")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
        return tensor.unsqueeze(0) if tensor.dim() == 3 else tensor
    try:
        image = Image.open(path)
        image.load()
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    side = size or NATIVE_SIZE[dataset]
    mode = "L" if in_channels == 1 else "RGB"
    pixels = np.asarray(image.convert(mode).resize((side, side)), dtype=np.float32) / 255.0
    if dataset == "digits":
        pixels = 1.0 - pixels  # ink is high in scikit-learn's digits
    tensor = torch.from_numpy(pixels)
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    stats = _normalisation(dataset)
    if stats is not None:
        mean, std = (torch.tensor(v).view(-1, 1, 1) for v in stats)
        tensor = (tensor - mean) / std
    return tensor.unsqueeze(0)
