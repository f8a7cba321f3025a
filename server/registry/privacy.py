"""Whether a component's stated privacy meets a requirement, and adds up.

A silo's ε is a claim: the server cannot see how the silo trained. It can check two things
before the component enters the registry (Abadi et al. 2016 give ε as a function of the
mechanism's parameters alone, so anyone can recompute it):

- **the requirement** (:class:`PrivacyFloor`): of the run (``dp-epsilon`` or
  ``dp-noise-multiplier``), and of the registry, which keeps the one it was created with
  for good. Only components that state DP-SGD at that ε (or below) and δ (or below), or
  that σ (or above), get in. A node running an older client that ignores the DP settings,
  or a later run without them, would otherwise slip a non-private component into a
  federation that promised its silos a bound;
- **consistency**: the stated parameters describe a real run on the component's N examples
  (σ not below the accountant's smallest, an expected batch q·N of at least one example, at
  least about one expected pass over the data), and the stated ε is not below what the
  stated σ, q, steps and δ give under the RDP accountant (the one the silos use,
  ``common.training.accounting``). Parameters that would make ε vanish (q = 1e-9 for one
  step) or break the accountant (a σ of 1e-300) are refused with the reason.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from tmc.common.components import PrivacyMeta
from tmc.common.schema import StrictModel
from tmc.common.training import PrivacyConfig
from tmc.common.training.accounting import MIN_NOISE_MULTIPLIER, epsilon

MIN_PASSES = 0.5
"""The fewest expected passes over the data (steps·q) a stated run may make: one epoch of
round(N / batch) steps at q = batch / N is at least 2/3 of a pass."""

RELATIVE_TOLERANCE = 1e-3
"""Slack for ε computed by another version of the accountant (its numerics move the last
digits, not the guarantee)."""


class PrivacyFloor(StrictModel):
    """What every component must state: DP-SGD with ε ≤ ``epsilon`` and/or σ ≥
    ``noise_multiplier``, and δ ≤ ``delta``."""

    epsilon: float | None = Field(None, gt=0.0, le=1e4, allow_inf_nan=False)
    delta: float = Field(gt=0.0, lt=1.0, allow_inf_nan=False)
    noise_multiplier: float | None = Field(None, gt=0.0, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds_something(self) -> PrivacyFloor:
        if self.epsilon is None and self.noise_multiplier is None:
            raise ValueError("a privacy floor needs an epsilon or a noise multiplier")
        return self

    @classmethod
    def of(cls, config: PrivacyConfig | None) -> PrivacyFloor | None:
        """The floor a run's DP settings set (None when it asks for no DP)."""
        if config is None:
            return None
        # The run config's 0 ("not set") is this record's None.
        return cls(
            epsilon=config.target_epsilon or None,
            delta=config.delta,
            noise_multiplier=config.noise_multiplier or None,
        )

    def describe(self) -> str:
        parts = [f"ε ≤ {self.epsilon:g}"] if self.epsilon is not None else []
        if self.noise_multiplier is not None:
            parts.append(f"σ ≥ {self.noise_multiplier:g}")
        return "DP-SGD with " + ", ".join([*parts, f"δ ≤ {self.delta:g}"])

    def looser_than(self, floor: PrivacyFloor) -> list[str]:
        """How this floor lets in what ``floor`` would not (empty when it is as strict)."""
        found = []
        if floor.epsilon is not None and (self.epsilon is None or self.epsilon > floor.epsilon):
            found.append(f"dp-epsilon {_or_unset(self.epsilon)} vs at most {floor.epsilon:g}")
        if self.delta > floor.delta:
            found.append(f"dp-delta {self.delta:g} vs at most {floor.delta:g}")
        sigma = floor.noise_multiplier
        if sigma is not None and (self.noise_multiplier or 0.0) < sigma:
            found.append(
                f"dp-noise-multiplier {_or_unset(self.noise_multiplier)} vs at least {sigma:g}"
            )
        return found


def shortfall(asked: PrivacyFloor | None, held: PrivacyFloor) -> list[str]:
    """How a run asking ``asked`` (None: no DP) falls short of a registry's floor ``held``."""
    return ["no DP settings"] if asked is None else asked.looser_than(held)


def _or_unset(value: float | None) -> str:
    return "unset" if value is None else f"{value:g}"


def _claim_problem(stated: PrivacyMeta, num_examples: int) -> str | None:
    """Why ``stated`` cannot be the accounting of a DP-SGD run on ``num_examples`` examples."""
    if stated.noise_multiplier < MIN_NOISE_MULTIPLIER:
        return (
            f"the component states noise multiplier σ = {stated.noise_multiplier:.3g}, below "
            f"the smallest the accountant is used for ({MIN_NOISE_MULTIPLIER:g}): such noise "
            "gives no meaningful guarantee"
        )
    if stated.sampling_rate * num_examples < 1.0:
        return (
            f"the component states sampling rate q = {stated.sampling_rate:.3g} for "
            f"{num_examples} examples, an expected batch of "
            f"{stated.sampling_rate * num_examples:.3g} examples (below one): not a DP-SGD run "
            "that trained on its data"
        )
    if stated.steps * stated.sampling_rate < MIN_PASSES:
        return (
            f"the component states {stated.steps} steps at q = {stated.sampling_rate:.3g}, "
            f"{stated.steps * stated.sampling_rate:.3g} expected passes over its data (at "
            f"least {MIN_PASSES:g} for one epoch): its privacy claim does not describe its "
            "training"
        )
    try:
        implied = epsilon(stated.noise_multiplier, stated.sampling_rate, stated.steps, stated.delta)
    except (ArithmeticError, ValueError) as exc:
        return f"the accountant cannot evaluate the component's DP-SGD parameters: {exc}"
    if not math.isfinite(implied) or implied <= 0.0:
        return f"the component's DP-SGD parameters give ε = {implied:g}, not a finite bound"
    if stated.epsilon < implied * (1.0 - RELATIVE_TOLERANCE):
        return (
            f"the component states ε = {stated.epsilon:.4g}, but its own DP-SGD parameters "
            f"(σ {stated.noise_multiplier:.4g}, q {stated.sampling_rate:.4g}, "
            f"{stated.steps} steps, δ {stated.delta:g}) give ε = {implied:.4g}: its privacy "
            "claim does not add up"
        )
    return None


def privacy_refusal(
    asked: PrivacyFloor | None, stated: PrivacyMeta | None, *, num_examples: int
) -> str | None:
    """Why a component of ``num_examples`` examples stating ``stated`` does not meet
    ``asked`` (``None``: nothing is asked) or does not add up, or ``None`` when it does."""
    if stated is not None and (problem := _claim_problem(stated, num_examples)):
        return problem
    if asked is None:
        return None
    if stated is None:
        return (
            f"{asked.describe()} is required, but the component states no privacy: the silo "
            "trained without DP (an outdated client or a node configured by hand), so it is "
            "not let into a private federation"
        )
    limit = asked.epsilon
    if limit is not None and stated.epsilon > limit * (1.0 + RELATIVE_TOLERANCE):
        return f"the component states ε = {stated.epsilon:.4g}, above the required {limit:g}"
    if stated.delta > asked.delta:
        return f"the component states δ = {stated.delta:g}, above the required {asked.delta:g}"
    sigma = asked.noise_multiplier
    if sigma is not None and stated.noise_multiplier < sigma * (1.0 - RELATIVE_TOLERANCE):
        return (
            f"the component states σ = {stated.noise_multiplier:.4g}, below the required {sigma:g}"
        )
    return None


__all__ = ["MIN_PASSES", "RELATIVE_TOLERANCE", "PrivacyFloor", "privacy_refusal", "shortfall"]
