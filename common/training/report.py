"""What local training reports (sent to the server as metrics), shared by the plain loop
and DP-SGD."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from tmc.common.components.privacy import PrivacyMeta

Sample = tuple[torch.Tensor, int]


@dataclass(frozen=True)
class TrainReport:
    """What happened during local training (sent to the server as metrics)."""

    num_examples: int
    epochs: int
    final_loss: float
    epoch_losses: tuple[float, ...]
    seconds: float
    device: str
    label_histogram: dict[int, int]
    cached_features: bool = False
    """The frozen part ran once per example (features cached), not once per epoch."""
    encode_seconds: float = 0.0
    """Of ``seconds``, the time spent computing the cached features."""
    privacy: PrivacyMeta | None = None
    """The DP-SGD accounting when ``TrainConfig.privacy`` is set (``common.training.privacy``)."""


def label_histogram(dataset: Dataset[Sample]) -> dict[int, int]:
    """Counts per label; uses the dataset's ``targets`` when it has them (no image decoding)."""
    targets = getattr(dataset, "targets", None)
    labels = (
        [int(t) for t in targets]
        if targets is not None
        else [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]
    )
    return dict(sorted(Counter(labels).items()))


__all__ = ["Sample", "TrainReport", "label_histogram"]
