"""Whether a component's stated privacy is what the run asked for, and adds up.

A silo's ε is a claim: the server cannot see how the silo trained. It can check two things
before the component enters the registry (Abadi et al. 2016 give ε as a function of the
mechanism's parameters alone, so anyone can recompute it):

- **the run's requirement**: a run with ``dp-epsilon`` (or ``dp-noise-multiplier``) accepts
  only components that state DP-SGD at that ε (or below) and that δ (or below), or that σ
  (or above). A node running an older client that ignores the DP settings, or one
  configured by hand, would otherwise slip a non-private component into a federation that
  promised its silos a bound;
- **consistency**: the stated ε is not below what the stated σ, q, steps and δ give under
  the RDP accountant (the one the silos use, ``common.training.accounting``).
"""

from __future__ import annotations

from common.components import PrivacyMeta
from common.training import PrivacyConfig
from common.training.accounting import epsilon

RELATIVE_TOLERANCE = 1e-3
"""Slack for ε computed by another version of the accountant (its numerics move the last
digits, not the guarantee)."""


def privacy_refusal(asked: PrivacyConfig | None, stated: PrivacyMeta | None) -> str | None:
    """Why a component stating ``stated`` does not meet ``asked`` (the run's DP settings,
    ``None`` when the run asks for none), or ``None`` when it does."""
    if stated is not None:
        implied = epsilon(stated.noise_multiplier, stated.sampling_rate, stated.steps, stated.delta)
        if stated.epsilon < implied * (1.0 - RELATIVE_TOLERANCE):
            return (
                f"the component states ε = {stated.epsilon:.4g}, but its own DP-SGD parameters "
                f"(σ {stated.noise_multiplier:.4g}, q {stated.sampling_rate:.4g}, "
                f"{stated.steps} steps, δ {stated.delta:g}) give ε = {implied:.4g}: its privacy "
                "claim does not add up"
            )
    if asked is None:
        return None
    wanted = (
        f"dp-epsilon {asked.target_epsilon:g}"
        if asked.target_epsilon is not None
        else f"dp-noise-multiplier {asked.noise_multiplier:g}"
    )
    if stated is None:
        return (
            f"the run asks for DP-SGD ({wanted}, dp-delta {asked.delta:g}) but the component "
            "states no privacy: the silo trained without DP (an outdated client or a node "
            "configured by hand), so it is not let into a private federation"
        )
    limit = asked.target_epsilon
    if limit is not None and stated.epsilon > limit * (1.0 + RELATIVE_TOLERANCE):
        return f"the component states ε = {stated.epsilon:.4g}, above the run's {wanted}"
    if stated.delta > asked.delta:
        return (
            f"the component states δ = {stated.delta:g}, above the run's dp-delta {asked.delta:g}"
        )
    sigma = asked.noise_multiplier
    if sigma is not None and stated.noise_multiplier < sigma * (1.0 - RELATIVE_TOLERANCE):
        return (
            f"the component states σ = {stated.noise_multiplier:.4g}, below the run's "
            f"dp-noise-multiplier {sigma:g}"
        )
    return None


__all__ = ["RELATIVE_TOLERANCE", "privacy_refusal"]
