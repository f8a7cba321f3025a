"""Hyper-parameters of local training, validated where they enter (run config, CLI)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tmc.common.schema import StrictModel

LossName = Literal["square", "ce"]
LossClasses = Literal["all", "present"]


class PrivacyConfig(StrictModel):
    """DP-SGD on the tangent parameters (``common.training.privacy``; Abadi et al. 2016):
    per-example gradients clipped to ``clip``, Gaussian noise of std σ·clip on their sum,
    Poisson sampling at q = batch_size / N. σ is ``noise_multiplier`` when given, else the
    smallest σ whose ε at ``delta`` is at most ``target_epsilon`` for the silo's own N (only
    the silo knows N). With both, a σ that does not reach the target is refused."""

    target_epsilon: float | None = Field(None, gt=0.0, le=1e4, allow_inf_nan=False)
    delta: float = Field(1e-5, gt=0.0, lt=1.0, allow_inf_nan=False)
    clip: float = Field(1.0, gt=0.0, le=1e6, allow_inf_nan=False)
    noise_multiplier: float | None = Field(None, gt=0.0, le=1e6, allow_inf_nan=False)
    noise_seed: int | None = Field(
        None,
        description="seed of the sampling and the noise, for tests and benchmarks only: "
        "None (the default) seeds from the OS's entropy, as a real guarantee needs",
    )

    @model_validator(mode="after")
    def _needs_a_budget(self) -> PrivacyConfig:
        if self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError("DP-SGD needs a target epsilon or a noise multiplier")
        return self


class TrainConfig(StrictModel):
    """How one component is trained. Defaults are the reference's (docs/design/method.md): AdamW at
    lr 1e-4 without decoupled weight decay, batch 32, 50 epochs, ×0.1 at 50 % and 80 % of
    the epochs, rescaled square loss with κ = 15, penalty 1e-5·√(‖Δ‖² + 1e-6).
    The built-in ``digits`` preset (``digits_preset``) trains faster at lr 1e-3."""

    epochs: int = Field(50, ge=1, le=10_000)
    batch_size: int = Field(32, ge=1, le=65_536)
    lr: float = Field(1e-4, gt=0.0, le=10.0)
    loss: LossName = "square"
    kappa: float = Field(15.0, gt=0.0, le=1e4, description="target scale of the square loss")
    loss_classes: LossClasses = Field(
        "all",
        description="outputs the loss reads: 'all' (the reference: absent classes are "
        "targets of 0) or 'present' (only the classes of the shard being trained)",
    )
    penalty: float = Field(1e-5, ge=0.0, le=1e3, description="weight of √(‖Δ‖² + ε)")
    penalty_eps: float = Field(1e-6, gt=0.0)
    milestones: tuple[float, ...] = Field(
        (0.5, 0.8), description="fractions of the epochs at which lr is multiplied by gamma"
    )
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda|cuda:\d+)$")
    cache_features: bool = Field(
        True,
        description="run the frozen part below the first trained layer once per example and "
        "train on its cached output (same result; needs a dataset without random "
        "augmentation, as every dataset here is)",
    )
    privacy: PrivacyConfig | None = Field(None, description="DP-SGD (None: off)")

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < m < 1.0 for m in value) or list(value) != sorted(value):
            raise ValueError("milestones must be increasing fractions of the epochs in (0, 1)")
        return value

    def milestone_epochs(self) -> list[int]:
        return sorted({max(1, round(m * self.epochs)) for m in self.milestones})


def digits_preset(**overrides: object) -> TrainConfig:
    """Settings that train a ``small-cnn`` component on a ``digits`` silo in seconds
    (measured in the feasibility run of docs/design/benchmarks.md: lr 1e-3, κ = 15)."""
    values: dict[str, object] = {"epochs": 30, "lr": 1e-3, "batch_size": 32}
    values.update(overrides)
    return TrainConfig.model_validate(values)
