"""The privacy accounting of DP-SGD: ε of a run, and the noise a target ε needs.

A DP-SGD run (``common.training.privacy``) is ``steps`` compositions of the sampled
Gaussian mechanism: Poisson sampling at rate q, then Gaussian noise of std σ·C on a sum of
gradients clipped to norm C (Abadi et al., CCS 2016). Its privacy loss is accounted in
Rényi DP (Mironov, "Rényi Differential Privacy", CSF 2017), with the sampled-Gaussian RDP of
Mironov, Talwar & Zhang (2019), by the ``RdpAccountant`` of Google's ``dp-accounting``
library at its default orders, for add-or-remove-one neighbouring datasets, and converted
to (ε, δ) there. σ for a target ε is found by the same library's calibration (Brent's
method, then a check that the σ returned does reach the target).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata

from dp_accounting import dp_event, mechanism_calibration
from dp_accounting.rdp import rdp_privacy_accountant

from tmc.common.components.privacy import PrivacyMeta
from tmc.common.errors import ConfigError
from tmc.common.training.config import PrivacyConfig

ACCOUNTANT = "dp-accounting RDP"
MIN_NOISE_MULTIPLIER = 0.05
MAX_NOISE_MULTIPLIER = 100.0
"""The largest σ calibration tries: noise of 100 clip norms per step buries any batch's
signal (its clipped sum is at most q·N·C), so a target that needs more is refused."""


def accountant_version() -> str:
    return metadata.version("dp-accounting")


def _event(noise_multiplier: float, sampling_rate: float, steps: int) -> dp_event.DpEvent:
    gaussian = dp_event.GaussianDpEvent(noise_multiplier)
    return dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(sampling_rate, gaussian), steps
    )


@contextmanager
def _quiet_accountant() -> Iterator[None]:
    # At small σ the accountant logs, per fractional order whose series does not converge,
    # that it leaves the order out of the minimum: ε stays a valid (larger) upper bound.
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@functools.lru_cache(maxsize=4096)
def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float) -> float:
    """ε at ``delta`` of ``steps`` Poisson-sampled Gaussian steps (RDP accountant). Cached:
    a pure function, and the server recomputes each component's claim at the round and
    again in the registry (about 0.1 s each)."""
    with _quiet_accountant():
        accountant = rdp_privacy_accountant.RdpAccountant()
        accountant.compose(_event(noise_multiplier, sampling_rate, steps))
        return float(accountant.get_epsilon(delta))


def noise_for_epsilon(
    target_epsilon: float, sampling_rate: float, steps: int, delta: float
) -> float:
    """The smallest σ (to 1e-4) whose ε at ``delta`` is at most ``target_epsilon``; a
    :class:`ConfigError` when even ``MAX_NOISE_MULTIPLIER`` does not reach it."""
    reached = epsilon(MAX_NOISE_MULTIPLIER, sampling_rate, steps, delta)
    if reached > target_epsilon:
        raise ConfigError(
            f"ε = {target_epsilon:g} at δ = {delta:g} is out of reach for {steps} steps at "
            f"sampling rate q = {sampling_rate:.4g}: even noise multiplier "
            f"{MAX_NOISE_MULTIPLIER:g} gives ε = {reached:.3g}, so this silo will not train; "
            "raise dp-epsilon, or lower epochs or batch-size (fewer steps, a smaller q)"
        )
    if epsilon(MIN_NOISE_MULTIPLIER, sampling_rate, steps, delta) <= target_epsilon:
        return MIN_NOISE_MULTIPLIER
    with _quiet_accountant():
        sigma = mechanism_calibration.calibrate_dp_mechanism(
            rdp_privacy_accountant.RdpAccountant,
            lambda s: _event(s, sampling_rate, steps),
            target_epsilon,
            delta,
            mechanism_calibration.ExplicitBracketInterval(
                MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER
            ),
            tol=1e-4,
        )
    return float(sigma)


def dp_schedule(*, num_examples: int, batch_size: int, epochs: int) -> tuple[float, int, int]:
    """DP-SGD's sampling rate q = batch-size / N, its number of steps, and the steps of one
    epoch (N / batch-size rounded, at least one): what a silo of ``num_examples`` trained
    with these settings states, so the server can recompute it."""
    per_epoch = max(1, round(num_examples / batch_size))
    return batch_size / num_examples, epochs * per_epoch, per_epoch


@dataclass(frozen=True)
class PrivacyPlan:
    """DP-SGD's parameters for one shard and the (ε, δ) they give."""

    noise_multiplier: float
    clip: float
    sampling_rate: float
    steps: int
    steps_per_epoch: int
    delta: float
    epsilon: float
    expected_batch: float
    """q·N: the fixed normaliser of the noisy gradient sum."""

    def meta(self) -> PrivacyMeta:
        return PrivacyMeta(
            epsilon=self.epsilon,
            delta=self.delta,
            noise_multiplier=self.noise_multiplier,
            clip=self.clip,
            steps=self.steps,
            sampling_rate=self.sampling_rate,
            accountant=ACCOUNTANT,
            accountant_version=accountant_version(),
        )


def plan_privacy(
    privacy: PrivacyConfig, *, num_examples: int, batch_size: int, epochs: int
) -> PrivacyPlan:
    """σ for this silo's N (only the silo knows it), or a :class:`ConfigError` saying what
    to change when the settings cannot give the privacy asked for."""
    n = num_examples
    if batch_size >= n:
        raise ConfigError(
            f"DP-SGD samples each example with probability batch-size / N, which must be "
            f"below 1, but batch-size {batch_size} ≥ this silo's {n} examples: lower batch-size"
        )
    if privacy.delta >= 1.0 / n:
        raise ConfigError(
            f"dp-delta {privacy.delta:g} is not below 1/N = 1/{n}: such a δ allows releasing "
            "an example outright, so this silo will not train; choose dp-delta < 1/N "
            "(1e-5 is usual)"
        )
    rate, steps, per_epoch = dp_schedule(num_examples=n, batch_size=batch_size, epochs=epochs)
    context = f"silo of {n} examples, batch-size {batch_size}, {epochs} epochs"
    if privacy.noise_multiplier:
        sigma = privacy.noise_multiplier
        eps = epsilon(sigma, rate, steps, privacy.delta)
        target = privacy.target_epsilon
        if target and eps > target:
            raise ConfigError(
                f"noise multiplier {sigma:g} gives ε = {eps:.3g} > dp-epsilon {target:g} "
                f"({context}): raise the noise multiplier, or leave it unset to calibrate"
            )
    else:
        # PrivacyConfig's validator: without σ there is a target ε.
        try:
            sigma = noise_for_epsilon(privacy.target_epsilon, rate, steps, privacy.delta)
        except ConfigError as exc:
            raise ConfigError(f"{context}: {exc}") from exc
        eps = epsilon(sigma, rate, steps, privacy.delta)
    return PrivacyPlan(
        noise_multiplier=sigma,
        clip=privacy.clip,
        sampling_rate=rate,
        steps=steps,
        steps_per_epoch=per_epoch,
        delta=privacy.delta,
        epsilon=eps,
        expected_batch=rate * n,
    )


__all__ = [
    "ACCOUNTANT",
    "MAX_NOISE_MULTIPLIER",
    "MIN_NOISE_MULTIPLIER",
    "PrivacyPlan",
    "accountant_version",
    "dp_schedule",
    "epsilon",
    "noise_for_epsilon",
    "plan_privacy",
]
