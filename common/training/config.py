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
    the silo knows N). With both, a σ that does not reach the target is refused.

    0 is "not set" for both ``target_epsilon`` and ``noise_multiplier``, as in the run config
    (TOML has no null); its ``dp-*`` keys take their declaration from these fields."""

    target_epsilon: float = Field(
        0.0,
        ge=0.0,
        le=1e4,
        allow_inf_nan=False,
        description="DP-SGD per silo: target ε of each component (0: no DP)",
    )
    delta: float = Field(
        1e-5, gt=0.0, lt=1.0, allow_inf_nan=False, description="δ of the (ε, δ) guarantee"
    )
    clip: float = Field(
        1.0,
        gt=0.0,
        le=1e6,
        allow_inf_nan=False,
        description="DP-SGD per-example gradient norm bound C",
    )
    noise_multiplier: float = Field(
        0.0,
        ge=0.0,
        le=1e6,
        allow_inf_nan=False,
        description="DP-SGD noise multiplier σ (0: the smallest that reaches the target ε)",
    )
    noise_seed: int | None = Field(
        None,
        description="seed of the sampling and the noise, for tests and benchmarks only: "
        "None (the default) seeds from the OS's entropy, as a real guarantee needs",
    )

    @model_validator(mode="after")
    def _needs_a_budget(self) -> PrivacyConfig:
        if not (self.target_epsilon or self.noise_multiplier):
            raise ValueError("DP-SGD needs a target epsilon or a noise multiplier (both are 0)")
        return self


class TrainConfig(StrictModel):
    """How one component is trained: AdamW without decoupled weight decay, ×``gamma`` at
    the ``milestones``, rescaled square loss with κ, penalty ·√(‖Δ‖² + ε) (the method's
    recipe, docs/notes/method.md). The run config's training keys (epochs, lr,
    batch-size, loss, kappa, penalty, client-device) take their declaration (default,
    bounds, help) from these fields, so a component trained here and one trained in a
    federation start from the same defaults: 30 epochs at lr 1e-3, which trains a
    ``small-cnn`` on a ``digits`` silo in seconds (the method's reference recipe for
    ImageNet backbones, 50 epochs at lr 1e-4, is set explicitly)."""

    epochs: int = Field(30, ge=1, le=10_000, description="local epochs per component")
    batch_size: int = Field(32, ge=1, le=65_536, description="examples per training step")
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="AdamW learning rate")
    loss: LossName = Field("square", description="training loss (square: rescaled, target κ)")
    kappa: float = Field(
        15.0, gt=0.0, le=1e4, description="target scale of the square loss (15 class, 5 iid)"
    )
    loss_classes: LossClasses = Field(
        "all",
        description="outputs the loss reads: 'all' (the reference: absent classes are "
        "targets of 0) or 'present' (only the classes of the shard being trained)",
    )
    penalty: float = Field(1e-5, ge=0.0, le=1e3, description="weight of the √(‖Δ‖² + ε) penalty")
    penalty_eps: float = Field(1e-6, gt=0.0)
    milestones: tuple[float, ...] = Field(
        (0.5, 0.8), description="fractions of the epochs at which lr is multiplied by gamma"
    )
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, description="seed of the data order")
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda|cuda:\d+)$", description="auto | cpu | cuda | cuda:N"
    )
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
