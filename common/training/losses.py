"""Losses of local training (docs/notes/method.md): the rescaled square loss,
cross-entropy, and the √(‖Δ‖² + ε) penalty that pulls Δ towards θ0."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from tmc.common.training.config import TrainConfig


def present_classes(
    histogram: dict[int, int], config: TrainConfig, device: torch.device
) -> torch.Tensor | None:
    """The indices of the shard's own classes when the loss reads only those."""
    if config.loss_classes == "all":
        return None
    return torch.tensor(sorted(histogram), dtype=torch.long, device=device)


def rescaled_square_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    kappa: float,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """mean over batch and classes of (f_c(x) − κ·1[y = c])² (Hui & Belkin 2021; TMC);
    with ``classes`` (indices of outputs), over those classes only."""
    target = F.one_hot(labels, logits.shape[1]).to(logits.dtype) * kappa
    if classes is not None:
        return (logits[:, classes] - target[:, classes]).pow(2).mean()
    return (logits - target).pow(2).mean()


def task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """The configured loss; ``classes`` (indices of outputs) restricts it to those: the
    square loss then ignores the others, cross-entropy normalises over these only."""
    if config.loss == "square":
        return rescaled_square_loss(logits, labels, config.kappa, classes)
    if classes is not None:
        absent = torch.ones(logits.shape[1], dtype=torch.bool, device=logits.device)
        absent[classes] = False
        logits = logits.masked_fill(absent, float("-inf"))
    return F.cross_entropy(logits, labels)


def distance_penalty(
    tensors: Iterable[torch.Tensor], references: Iterable[torch.Tensor] | None = None, *, eps: float
) -> torch.Tensor:
    """√(Σ‖t − r‖² + ε): for a tangent model t = Δ (r = 0); for non-linear fine-tuning
    t = θ and r = θ0, so that both baselines get the same regulariser."""
    items = list(tensors)
    refs = list(references) if references is not None else [None] * len(items)
    total = sum(
        ((t - r).pow(2).sum() if r is not None else t.pow(2).sum())
        for t, r in zip(items, refs, strict=True)
    )
    return torch.sqrt(torch.as_tensor(total) + eps)
