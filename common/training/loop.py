"""Local training: one tangent component, or the non-linear fine-tuning baseline.

Both run the same loop (same data order, loss, penalty, optimiser and schedule), so that a
comparison between them measures the model, not the training code.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tmc.common.components.delta import Delta
from tmc.common.device import resolve_device
from tmc.common.errors import DataError
from tmc.common.progress import progress_bar
from tmc.common.tangent.model import TangentModel
from tmc.common.training.config import TrainConfig
from tmc.common.training.features import (
    SuffixOnFeatures,
    TangentOnFeatures,
    batch_to,
    encode_dataset,
    network_encoder,
    split_for_finetuning,
)
from tmc.common.training.losses import distance_penalty, present_classes, task_loss
from tmc.common.training.privacy import train_private
from tmc.common.training.report import Sample, TrainReport, label_histogram


def fit(
    module: nn.Module,
    params: Sequence[nn.Parameter],
    dataset: Dataset[Sample] | Dataset[tuple[tuple[torch.Tensor, ...], int]],
    config: TrainConfig,
    *,
    penalty: Callable[[], torch.Tensor],
    batchnorm_train: bool = False,
    progress: bool = False,
    description: str = "training",
) -> TrainReport:
    """Minimise task loss + ``config.penalty``·penalty() over ``params`` with AdamW and step
    decay. The module must already be on the target device."""
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise DataError("cannot train on an empty shard")
    device = next(iter(params)).device
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator)
    # No decoupled weight decay: the only regulariser is the distance penalty (reference).
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestone_epochs(), gamma=config.gamma
    )
    histogram = label_histogram(dataset)  # type: ignore[arg-type]
    classes = present_classes(histogram, config, device)
    module.train(batchnorm_train)
    losses: list[float] = []
    start = time.perf_counter()
    with progress_bar(config.epochs * len(loader), description, enabled=progress) as update:
        for _ in range(config.epochs):
            total, seen = 0.0, 0
            for images, labels in loader:
                inputs, labels = batch_to(images, device), labels.to(device)
                loss = task_loss(module(inputs), labels, config, classes)
                objective = loss + config.penalty * penalty() if config.penalty else loss
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                optimizer.step()
                total += float(loss.detach()) * len(labels)
                seen += len(labels)
                update(status=f"loss {total / seen:.4f}")
            losses.append(total / seen)
            schedule.step()
    module.eval()
    return TrainReport(
        num_examples=size,
        epochs=config.epochs,
        final_loss=losses[-1],
        epoch_losses=tuple(losses),
        seconds=time.perf_counter() - start,
        device=str(device),
        label_histogram=histogram,
    )


def train_tangent(
    model: TangentModel,
    dataset: Dataset[Sample],
    config: TrainConfig,
    *,
    progress: bool = False,
    description: str = "tangent component",
) -> tuple[Delta, TrainReport]:
    """Train Δ of ``model`` from zero on ``dataset``; returns Δ on the CPU and a report.

    With ``config.cache_features`` (the default) the frozen part below the first tangent
    layer runs once per example and the epochs train on its cached output
    (``common.training.features``); the Δ is the same, bit for bit on the CPU.

    With ``config.privacy`` it trains with DP-SGD instead (``common.training.privacy``)."""
    if config.privacy is not None:
        return train_private(model, dataset, config, progress=progress, description=description)
    device = resolve_device(config.device)
    model.reset_delta()
    model.to(device)
    params = list(model.delta_parameters())
    start = time.perf_counter()
    cached = (
        encode_dataset(model.frozen_features, dataset, batch_size=config.batch_size, device=device)
        if config.cache_features
        else None
    )
    encode_seconds = time.perf_counter() - start
    report = fit(
        model if cached is None else TangentOnFeatures(model),
        params,
        dataset if cached is None else cached,
        config,
        penalty=lambda: distance_penalty(params, eps=config.penalty_eps),
        progress=progress,
        description=description,
    )
    if cached is not None:
        report = dataclasses.replace(
            report,
            seconds=report.seconds + encode_seconds,
            cached_features=True,
            encode_seconds=encode_seconds,
        )
    delta = Delta({n: t.detach().cpu().clone() for n, t in model.delta_state().items()})
    model.to("cpu")
    return delta, report


def finetune(
    network: nn.Module,
    names: Sequence[str],
    dataset: Dataset[Sample],
    config: TrainConfig,
    *,
    progress: bool = False,
    description: str = "non-linear fine-tuning",
) -> tuple[nn.Module, TrainReport]:
    """The non-linear baseline: ordinary fine-tuning of the same parameters a tangent
    component would train, from θ0, with the same loss, penalty (‖θ − θ0‖) and schedule.
    Normalisation stays in eval mode, as in the tangent model. Returns a trained copy."""
    device = resolve_device(config.device)
    tuned = copy.deepcopy(network).to(device)
    tuned.requires_grad_(False)
    own = dict(tuned.named_parameters())
    params = [own[n] for n in names]
    for p in params:
        p.requires_grad_(True)
    references = [p.detach().clone() for p in params]
    tuned.eval()
    start = time.perf_counter()
    split = split_for_finetuning(tuned, names) if config.cache_features else None
    cached = (
        encode_dataset(network_encoder(split), dataset, batch_size=config.batch_size, device=device)
        if split is not None
        else None
    )
    encode_seconds = time.perf_counter() - start
    report = fit(
        tuned if cached is None or split is None else SuffixOnFeatures(split),
        params,
        dataset if cached is None else cached,
        config,
        penalty=lambda: distance_penalty(params, references, eps=config.penalty_eps),
        progress=progress,
        description=description,
    )
    if cached is not None:
        report = dataclasses.replace(
            report,
            seconds=report.seconds + encode_seconds,
            cached_features=True,
            encode_seconds=encode_seconds,
        )
    tuned.requires_grad_(False)
    return tuned.to("cpu"), report
