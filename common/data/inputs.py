"""What a federation's model takes and says: its input spec and its label space.

Both are fixed when a federation's registry is created and travel to every silo, so that
a silo holding its own images prepares them exactly as the server, ``tmc predict`` and the
exported model do, and maps its own class names onto the federation's label indices *by
name* (a silo's ``cat`` folder is the federation's ``cat``, whatever the folder order).

:func:`prepare_image` is the one definition of "an image file as the model sees it"
(PIL resize, bilinear; scale to [0, 1]; optional inversion; per-channel normalisation); the
standalone loader (``common.standalone``) repeats it with the same arithmetic.
"""

from __future__ import annotations

import math
import re
import struct
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from pydantic import Field, field_validator, model_validator

from tmc.common.errors import ConfigError, DataError
from tmc.common.schema import StrictModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# One-channel images: the mean of ImageNet's statistics (torchvision's grayscale recipes).
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)

CLASS_NAME_PATTERN = r"^[^/\\\x00-\x1f\x7f]{1,128}$"
"""A class name: what a folder may be called (no path separators, no control characters)."""
_CLASS_NAME = re.compile(CLASS_NAME_PATTERN)

# PIL modes whose pixels have one channel; every other mode is read as colour (3 channels).
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class InputSpec(StrictModel):
    """How an image becomes the model's input: ``channels`` × ``size`` × ``size`` float32,
    pixels scaled to [0, 1], inverted when ``invert`` (dark ink on light paper becomes high
    values, as in scikit-learn's digits), then ``(x - mean) / std`` per channel when given."""

    channels: int = Field(ge=1, le=64)
    size: int = Field(ge=1, le=4096, description="side of the square input, in pixels")
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    invert: bool = False

    @model_validator(mode="after")
    def _normalisation(self) -> InputSpec:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != self.channels or len(self.std) != self.channels:
                raise ValueError(
                    f"mean and std need one value per channel ({self.channels}), got "
                    f"{len(self.mean)} and {len(self.std)}"
                )
            if not all(math.isfinite(v) for v in self.mean) or not all(
                math.isfinite(v) and v > 0 for v in self.std
            ):
                raise ValueError("mean must be finite and std finite and positive")
        return self

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def describe(self) -> str:
        kind = {1: "grayscale", 3: "RGB"}.get(self.channels, f"{self.channels}-channel")
        norm = "normalised" if self.mean is not None else "in [0, 1]"
        return f"{kind} {self.size}×{self.size}, {norm}" + (", inverted" if self.invert else "")


class DataSpec(StrictModel):
    """A federation's label space (class names, in label order) and its input spec."""

    classes: tuple[str, ...] = Field(min_length=2, max_length=100_000)
    input: InputSpec

    @field_validator("classes")
    @classmethod
    def _valid_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if not _CLASS_NAME.fullmatch(name) or name != name.strip()]
        if bad:
            raise ValueError(
                f"invalid class names {bad[:5]}: 1 to 128 characters, no '/', '\\' or control "
                "characters, no leading or trailing spaces"
            )
        duplicates = sorted(name for name, n in Counter(value).items() if n > 1)
        if duplicates:
            raise ValueError(f"class names must be distinct; repeated: {duplicates[:5]}")
        return value

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def unknown(self, names: Sequence[str]) -> list[str]:
        """The names that are not classes of this federation, in the order given."""
        known = set(self.classes)
        return [name for name in names if name not in known]

    def label_map(self, names: Sequence[str], *, where: str) -> np.ndarray:
        """``mapping[local_label] = federation label`` for a source whose labels index
        ``names``; a DataError naming the unknown classes if some are not in this space."""
        unknown = self.unknown(names)
        if unknown:
            raise DataError(
                f"{where} has classes the federation does not know: {unknown[:10]} "
                f"(the federation's classes: {list(self.classes)[:20]})"
            )
        index = {name: i for i, name in enumerate(self.classes)}
        return np.asarray([index[name] for name in names], dtype=np.int64)


def native_channels(mode: str) -> int:
    """Channels of an image file as stored: 1 for grayscale modes, 3 for colour ones."""
    return 1 if mode in _GRAY_MODES else 3


def prepare_image(image: Image.Image, spec: InputSpec) -> torch.Tensor:
    """One image as the model's input (float32 ``spec.shape``), see the module doc."""
    if spec.channels not in (1, 3):
        raise DataError(f"image files give 1 or 3 channels, not the {spec.channels} asked for")
    converted = image.convert("L" if spec.channels == 1 else "RGB")
    resized = converted.resize((spec.size, spec.size), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    if spec.invert:
        pixels = np.float32(1.0) - pixels
    tensor = torch.from_numpy(np.ascontiguousarray(pixels))
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()
    return normalise(tensor, spec)


def normalise(tensor: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """``(x - mean) / std`` per channel of a (C, H, W) or (N, C, H, W) tensor, if the spec
    normalises; the tensor itself otherwise."""
    if spec.mean is None or spec.std is None:
        return tensor
    shape = (-1, 1, 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(shape)
    std = torch.tensor(spec.std, dtype=torch.float32).view(shape)
    return ((tensor - mean) / std).contiguous()


MAX_IMAGE_PIXELS = 8192 * 8192
"""The most pixels an image file may claim (width × height in its header). A header is
a few bytes and can claim 100000×100000: decoding that would take tens of gigabytes, so
a larger claim is refused before any pixel is read."""

# What PIL raises on a malformed file: besides OSError (UnidentifiedImageError) and
# ValueError, its plugins let SyntaxError, EOFError and struct.error escape on bad headers.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)


def open_image(path: object) -> Image.Image:
    """An image file, opened (its header read, not its pixels): a DataError naming the file
    if it is not an image or claims more than :data:`MAX_IMAGE_PIXELS` pixels."""
    try:
        with warnings.catch_warnings():
            # PIL warns about large claims and raises on huge ones; the cap below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(str(path))
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"image {path} claims more than the {MAX_IMAGE_PIXELS} pixels an image may have "
            f"({exc}): a corrupt or hostile file"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise DataError(
            f"image {path} claims {width}×{height} pixels, more than the {MAX_IMAGE_PIXELS} "
            "an image may have: a corrupt or hostile file"
        )
    return image


def read_image(path: object) -> Image.Image:
    """An image file, decoded (a DataError naming the file if it is not one)."""
    image = open_image(path)
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        image.close()
        raise DataError(f"cannot decode image {path}: {exc}") from exc
    return image


def folder_input(*, channels: int, size: int) -> InputSpec:
    """The input spec of ImageFolder images: ``channels`` (1 or 3) × ``size`` px, normalised
    with ImageNet's statistics (their mean for one channel)."""
    if channels not in (1, 3):
        raise ConfigError(f"image folders give 1 or 3 channels, not {channels}")
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (GRAY_MEAN, GRAY_STD)
    return InputSpec(channels=channels, size=size, mean=mean, std=std)


__all__ = [
    "CLASS_NAME_PATTERN",
    "GRAY_MEAN",
    "GRAY_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_IMAGE_PIXELS",
    "DataSpec",
    "InputSpec",
    "folder_input",
    "native_channels",
    "normalise",
    "open_image",
    "prepare_image",
    "read_image",
]
