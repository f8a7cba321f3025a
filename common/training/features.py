"""Training on cached features: the frozen part of the network runs once per example.

Below the first trained parameter the network computes the same values in every epoch
(its normalisation runs in eval mode and the datasets here are deterministic: no random
augmentation). LQF (Achille et al., CVPR 2021) trains its linearised last layers on such
pre-computed features. Here a component's shard is encoded once, batch by batch in dataset
order, and training then runs only the part above the cut, on batches drawn in the very
order the uncached loop draws them (same loader, same seeded generator), so that on the
CPU the Δ it trains is bit-identical to the uncached path's.

The cache lives on the training device; shards whose features would take more than
``MAX_CACHE_BYTES`` are trained uncached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tmc.common.tangent import TangentModel
from tmc.common.tangent.split import Features, FrozenSplit, is_per_example, split_frozen

Sample = tuple[torch.Tensor, int]
Encoder = Callable[[torch.Tensor], Features | None]

MAX_CACHE_BYTES = 2 << 30
"""Largest feature cache (2 GiB): above it, the frozen part runs every epoch instead."""


class FeatureSet(Dataset[tuple[Features, int]]):
    """Cached features of a shard, one row per example, with the shard's labels."""

    def __init__(self, features: Features, targets: npt.ArrayLike) -> None:
        self.features = features
        self.targets = np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Features, int]:
        return tuple(f[index] for f in self.features), int(self.targets[index])


def encode_dataset(
    encode: Encoder,
    dataset: Dataset[Sample],
    *,
    batch_size: int,
    device: torch.device,
    max_bytes: int = MAX_CACHE_BYTES,
) -> FeatureSet | None:
    """Every example's features, in dataset order; ``None`` when ``encode`` cannot cache
    them or they would exceed ``max_bytes``."""
    size = len(dataset)  # type: ignore[arg-type]
    chunks: list[Features] = []
    labels: list[torch.Tensor] = []
    with torch.no_grad():
        for images, batch_labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            features = encode(images.to(device))
            if features is None:
                return None
            if not chunks:
                per_example = sum(f[0].numel() * f.element_size() for f in features)
                if per_example * size > max_bytes:
                    return None
            chunks.append(features)
            labels.append(torch.as_tensor(batch_labels))
    if not chunks:
        return None
    merged = tuple(torch.cat(parts) for parts in zip(*chunks, strict=True))
    return FeatureSet(merged, torch.cat(labels).numpy())


def batch_to(batch: torch.Tensor | Sequence[torch.Tensor], device: torch.device) -> object:
    """A loader batch (images, or the list of feature tensors) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return tuple(t.to(device) for t in batch)


class TangentOnFeatures(nn.Module):
    """A tangent model applied to cached features (what ``fit`` trains then)."""

    def __init__(self, model: TangentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: Features) -> torch.Tensor:
        return self.model.forward_features(tuple(features))


class SuffixOnFeatures(nn.Module):
    """The trainable suffix of a split network applied to cached features."""

    def __init__(self, split: FrozenSplit) -> None:
        super().__init__()
        self.suffix = split.suffix

    def forward(self, features: Features) -> torch.Tensor:
        out: torch.Tensor = self.suffix(tuple(features))
        return out


def network_encoder(split: FrozenSplit) -> Encoder:
    """The prefix of a split network as an encoder (``None`` for non-per-example cuts)."""

    def encode(images: torch.Tensor) -> Features | None:
        features: Features = split.prefix(images)
        return features if is_per_example(features, images.shape[0]) else None

    return encode


def split_for_finetuning(network: nn.Module, names: Sequence[str]) -> FrozenSplit | None:
    """The network cut below the fine-tuned parameters (``None``: train it whole)."""
    return split_frozen(network, frozenset(names))
