"""What a differentially private component says about its privacy: the DP-SGD accounting.

A silo that trains with DP-SGD (``common.training.privacy``) records here the guarantee its
Δ carries: (ε, δ)-DP with respect to adding or removing one of its training examples
(Abadi et al., "Deep Learning with Differential Privacy", CCS 2016), as computed by the
accountant it names from the mechanism's parameters (noise multiplier σ, clip norm C,
Poisson sampling rate q, number of steps). Anyone holding the parameters can recompute ε
with the same accountant; the server checks that the claim is well formed (finite values,
ε > 0, 0 < δ < 1), not that the silo trained as it says: it cannot see the data.
"""

from __future__ import annotations

from pydantic import Field

from tmc.common.schema import StrictModel

NEIGHBOURING = "add-or-remove-one"
"""Datasets that differ by one example added or removed (the relation Poisson sampling
with a fixed normaliser q·N is accounted for, Abadi et al. 2016; Mironov et al. 2019)."""


class PrivacyMeta(StrictModel):
    """The (ε, δ) guarantee of one component's Δ and the DP-SGD parameters behind it."""

    mechanism: str = Field("dp-sgd", pattern=r"^dp-sgd$")
    epsilon: float = Field(gt=0.0, le=1e6, allow_inf_nan=False)
    delta: float = Field(gt=0.0, lt=1.0, allow_inf_nan=False)
    noise_multiplier: float = Field(
        gt=0.0, le=1e6, allow_inf_nan=False, description="σ: noise std per unit of clip norm"
    )
    clip: float = Field(gt=0.0, le=1e6, allow_inf_nan=False, description="C: per-example norm")
    steps: int = Field(ge=1, le=10**9)
    sampling_rate: float = Field(
        gt=0.0, lt=1.0, allow_inf_nan=False, description="q: Poisson sampling rate per step"
    )
    neighbouring: str = Field(NEIGHBOURING, pattern=r"^add-or-remove-one$")
    accountant: str = Field(min_length=1, max_length=128, description="e.g. dp-accounting RDP")
    accountant_version: str = Field(min_length=1, max_length=64)


__all__ = ["NEIGHBOURING", "PrivacyMeta"]
