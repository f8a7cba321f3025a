"""DP-SGD on the tangent parameters: a silo's component with (ε, δ) differential privacy.

The algorithm is Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016). Each
step samples a batch by Poisson sampling (every example joins independently with
probability q = batch_size / N; the accountant's amplification-by-sampling bound assumes
it), takes each example's gradient of the data loss w.r.t. Δ, clips it to norm C, sums the
clipped gradients, adds Gaussian noise N(0, σ²C²·I) and divides by the expected batch size
q·N (a fixed normaliser: the batch's actual size is itself private). The gradient of the
√(‖Δ‖² + ε) penalty depends on no data, so it is added afterwards at no privacy cost, and
AdamW, the step decay and the final Δ are post-processing of the noisy gradients.

Per-example gradients come from ``torch.func``: ``vmap`` of ``grad`` over one example.
The tangent model is linear in Δ, f_lin(x; Δ) = f(x; θ0) + J(x)·Δ, so the gradient of an
example's loss is J(x)ᵀ·g with g = ∂loss/∂f at its logits: g comes from one batched
forward, and each example's J(x)ᵀ·g is the gradient of ⟨f_lin(x; Δ), g⟩, by
``vmap(grad(...))`` over the function the model's backend hands out
(``TangentModel.linearised``: the tangent forward in Δ, or the plain network at θ0). With
``cache_features`` the frozen part runs once per example and DP-SGD trains on its output.

The privacy loss is accounted in Rényi DP (Mironov 2017) by Google's ``dp-accounting``
library, which also gives σ for the target ε (``common.training.accounting``). The
sampling and the noise are seeded from the OS's entropy unless a test fixes
``noise_seed``; like Opacus's default mode, they use torch's generators, not a
cryptographic one.
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch.func import grad, vmap
from torch.utils.data import Dataset, default_collate

from tmc.common.components.delta import Delta
from tmc.common.device import resolve_device
from tmc.common.errors import ConfigError, DataError
from tmc.common.progress import progress_bar
from tmc.common.tangent import Linearised, TangentModel
from tmc.common.training.accounting import PrivacyPlan, plan_privacy
from tmc.common.training.config import TrainConfig
from tmc.common.training.features import Encoder, encode_dataset
from tmc.common.training.losses import distance_penalty, present_classes, task_loss
from tmc.common.training.report import TrainReport, label_histogram

PER_EXAMPLE_BYTES = 256 << 20
"""Per-example gradients held at once (examples are taken in chunks that fit)."""

Inputs = torch.Tensor | tuple[torch.Tensor, ...]
Lookup = Mapping[str, torch.Tensor]
Sample = tuple[torch.Tensor, int]


# -- per-example gradients -----------------------------------------------------------------


def _one(x: Inputs) -> Inputs:
    return x.unsqueeze(0) if isinstance(x, torch.Tensor) else tuple(t.unsqueeze(0) for t in x)


def per_example_gradients(
    lin: Linearised, inputs: Inputs, output_grads: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Each example's J(x)ᵀ·g, stacked along a leading batch dimension, by name."""

    def contracted(params: Lookup, x: Inputs, g: torch.Tensor) -> torch.Tensor:
        return (lin.inner(_one(x), params) * g.unsqueeze(0)).sum()

    with warnings.catch_warnings():
        # In-place ops of the folded conv-BN rule run through vmap's per-example fallback:
        # correct, a little slower, and torch warns about it on every call.
        warnings.filterwarnings("ignore", message="There is a performance drop")
        grads: dict[str, torch.Tensor] = vmap(grad(contracted), in_dims=(None, 0, 0))(
            lin.point(), inputs, output_grads
        )
    return grads


def clipped_sum(
    grads: Mapping[str, torch.Tensor], clip: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Σᵢ gᵢ / max(1, ‖gᵢ‖/C) (Abadi et al. 2016, Algorithm 1), and the norms ‖gᵢ‖; each
    clipped term has norm below C."""
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))  # type: ignore[arg-type]
    factors = (clip / (norms + 1e-6)).clamp(max=1.0)
    return {n: torch.einsum("b,b...->...", factors, g) for n, g in grads.items()}, norms


def add_noise(
    summed: Mapping[str, torch.Tensor],
    *,
    noise_multiplier: float,
    clip: float,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """summed + N(0, σ²C²·I), drawn from ``generator`` (on the tensors' device)."""
    std = noise_multiplier * clip
    return {
        n: s + std * torch.randn(s.shape, generator=generator, device=s.device, dtype=s.dtype)
        for n, s in summed.items()
    }


# -- training ------------------------------------------------------------------------------


def _take(inputs: Inputs, index: torch.Tensor) -> Inputs:
    return inputs[index] if isinstance(inputs, torch.Tensor) else tuple(t[index] for t in inputs)


def _prepare(
    model: TangentModel, dataset: Dataset[Sample], config: TrainConfig, device: torch.device
) -> tuple[Linearised, Callable[[torch.Tensor], tuple[Inputs, torch.Tensor]], bool]:
    """The linearised model and a batch reader (indices → inputs, labels on ``device``):
    on the cached features when the frozen part can be cached, else on the images."""
    encoder: Encoder | None = model.frozen_features if config.cache_features else None
    cached = (
        encode_dataset(encoder, dataset, batch_size=config.batch_size, device=device)
        if encoder is not None
        else None
    )
    if cached is not None:
        features = cached.features
        labels = torch.as_tensor(cached.targets, device=device)

        def from_cache(index: torch.Tensor) -> tuple[Inputs, torch.Tensor]:
            at = index.to(device)
            return _take(features, at), labels[at]

        return model.linearised(features=True), from_cache, True

    def from_dataset(index: torch.Tensor) -> tuple[Inputs, torch.Tensor]:
        images, targets = default_collate([dataset[int(i)] for i in index])
        return images.to(device), torch.as_tensor(targets, device=device)

    return model.linearised(), from_dataset, False


@dataclass
class _Step:
    """One DP-SGD step on the parameters ``params`` of the linearised model ``lin``."""

    lin: Linearised
    read: Callable[[torch.Tensor], tuple[Inputs, torch.Tensor]]
    params: list[torch.nn.Parameter]
    config: TrainConfig
    plan: PrivacyPlan
    sampling: torch.Generator
    noise: torch.Generator
    classes: torch.Tensor | None = None
    """The outputs the loss reads (``loss_classes``: 'present'), as in the non-private loop;
    the shard's class set is in the component's metadata, in the clear, either way."""

    @property
    def chunk(self) -> int:
        return max(1, PER_EXAMPLE_BYTES // (4 * sum(p.numel() for p in self.params)))

    def clipped_batch_sum(self, index: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
        """Σ of the batch's clipped per-example gradients, and Σ of its losses."""
        summed = {n: torch.zeros_like(p) for n, p in zip(self.lin.names, self.params, strict=True)}
        total = 0.0
        for part in torch.split(index, self.chunk):
            if not len(part):
                continue
            inputs, labels = self.read(part)
            with torch.no_grad():
                logits = self.lin.logits(inputs, self.lin.delta())
            logits.requires_grad_(True)
            with torch.enable_grad():
                # The data loss is a mean over the batch: times its size, its gradient w.r.t.
                # the logits holds each example's own ∂loss/∂f, row by row.
                loss = task_loss(logits, labels, self.config, self.classes) * len(labels)
                (output_grads,) = torch.autograd.grad(loss, logits)
            grads = per_example_gradients(self.lin, inputs, output_grads)
            clipped, _ = clipped_sum(grads, self.plan.clip)
            for name, value in clipped.items():
                summed[name] += value
            total += float(loss.detach())
        return summed, total

    def __call__(self, size: int) -> tuple[float, int]:
        """Sample a batch, set each parameter's gradient to the noisy one, step; returns
        the batch's loss sum and size (an empty batch still releases its noise)."""
        chosen = torch.rand(size, generator=self.sampling) < self.plan.sampling_rate
        index = chosen.nonzero().flatten()
        summed, total = self.clipped_batch_sum(index)
        noisy = add_noise(
            summed,
            noise_multiplier=self.plan.noise_multiplier,
            clip=self.plan.clip,
            generator=self.noise,
        )
        grads = [noisy[name] / self.plan.expected_batch for name in self.lin.names]
        if self.config.penalty:  # data-independent: no privacy cost (post-processing)
            with torch.enable_grad():
                penalty = distance_penalty(self.params, eps=self.config.penalty_eps)
                extra = torch.autograd.grad(penalty, self.params)
            grads = [g + self.config.penalty * e for g, e in zip(grads, extra, strict=True)]
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        return total, len(index)


def train_private(
    model: TangentModel,
    dataset: Dataset[Sample],
    config: TrainConfig,
    *,
    progress: bool = False,
    description: str = "tangent component (DP-SGD)",
) -> tuple[Delta, TrainReport]:
    """Train Δ of ``model`` from zero with DP-SGD; returns Δ on the CPU and a report
    whose ``privacy`` is the accounting (what the component's metadata records)."""
    privacy = config.privacy
    if privacy is None:
        raise ConfigError("train_private needs TrainConfig.privacy")
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise DataError("cannot train on an empty shard")
    histogram = label_histogram(dataset)
    plan = plan_privacy(
        privacy, num_examples=size, batch_size=config.batch_size, epochs=config.epochs
    )
    device = resolve_device(config.device)
    model.reset_delta()
    model.to(device)
    params = list(model.delta_parameters())
    start = time.perf_counter()
    lin, read, cached = _prepare(model, dataset, config, device)
    encode_seconds = time.perf_counter() - start
    seed = privacy.noise_seed if privacy.noise_seed is not None else secrets.randbits(63)
    step = _Step(
        lin,
        read,
        params,
        config,
        plan,
        sampling=torch.Generator().manual_seed(seed),
        noise=torch.Generator(device=device).manual_seed(seed ^ 0x5DEECE66D),
        classes=present_classes(histogram, config, device),
    )
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestone_epochs(), gamma=config.gamma
    )
    model.train()
    losses: list[float] = []
    with progress_bar(plan.steps, description, enabled=progress) as update:
        for _ in range(config.epochs):
            total, seen = 0.0, 0
            for _ in range(plan.steps_per_epoch):
                batch_loss, batch_size = step(size)
                optimizer.step()
                total, seen = total + batch_loss, seen + batch_size
                update(status=f"loss {total / max(seen, 1):.4f}")
            losses.append(total / seen if seen else (losses[-1] if losses else 0.0))
            schedule.step()
    model.eval()
    report = TrainReport(
        num_examples=size,
        epochs=config.epochs,
        final_loss=losses[-1],
        epoch_losses=tuple(losses),
        seconds=time.perf_counter() - start,
        device=str(device),
        label_histogram=histogram,
        cached_features=cached,
        encode_seconds=encode_seconds,
        privacy=plan.meta(),
    )
    delta = Delta({n: t.detach().cpu().clone() for n, t in model.delta_state().items()})
    model.to("cpu")
    return delta, report


__all__ = [
    "PER_EXAMPLE_BYTES",
    "add_noise",
    "clipped_sum",
    "per_example_gradients",
    "train_private",
]
