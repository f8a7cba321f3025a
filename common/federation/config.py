"""The run configuration of a federation, shared by the ServerApp and the ClientApps.

Flower passes it as a flat mapping (``[tool.flwr.app.config]`` in pyproject.toml, or
``--run-config`` overrides); here it is validated once, with hyphenated keys as in TOML.
An unknown key or a bad value is a :class:`ConfigError` that names it.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from tmc.common.components.compose import Weighting
from tmc.common.components.encoding import UNENCODED, Encoding
from tmc.common.data.dataset_inputs import dataset_data_spec
from tmc.common.data.inputs import DataSpec, folder_input
from tmc.common.data.spec import (
    DEFAULT_IMAGEFOLDER_SIZE,
    DatasetName,
    DatasetSpec,
    PartitionSpec,
    SplitSpec,
)
from tmc.common.errors import ConfigError
from tmc.common.models.spec import (
    ArchitectureName,
    BaseModelSpec,
    FileWeights,
    InitWeights,
    PackagedWeights,
    PretrainedWeights,
    TorchHubWeights,
    WeightsSpec,
)
from tmc.common.schema import StrictModel
from tmc.common.training.config import LossName, PrivacyConfig, TrainConfig


def _hyphen(name: str) -> str:
    return name.replace("_", "-")


def _as_in(model: type[StrictModel], name: str, **changes: Any) -> Any:
    """``model``'s declaration of field ``name`` (default, bounds, help), for a run-config key
    that is that field: the declaration stays in one place. ``changes`` overrides what
    reads differently at the federation's level (its help)."""
    field = copy.copy(model.model_fields[name])
    for attribute, value in changes.items():
        setattr(field, attribute, value)
    return field


def _problem(error: Mapping[str, Any]) -> str:
    """One validation error as ``key: what is wrong (got value)``."""
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        known = FederationConfig.known_keys()
        close = difflib.get_close_matches(key, known, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return f"unknown key {key!r} ({hint}known keys: {', '.join(known)})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if not key:  # a check across keys names them itself
        return message
    given = repr(error["input"])
    return f"{key}: {message} (got {given[:60] + '...' if len(given) > 60 else given})"


class FederationConfig(StrictModel):
    """Every knob of a federated run; defaults are the built-in ``digits`` federation.

    This is the one declaration of each run-config key: its name (the field's, hyphenated),
    type, default, bounds and help. The training and DP keys are :class:`TrainConfig`'s and
    :class:`PrivacyConfig`'s fields, taken from there; ``[tool.flwr.app.config]`` in
    pyproject.toml and the options of ``tmc simulate``/``tmc demo`` follow (tests check it).
    A value of 0 means "off" or "not set" wherever a key has such a state."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_hyphen, populate_by_name=True
    )

    # where the server keeps its state
    registry: str = Field("~/.tmc/registry", min_length=1, description="registry folder")
    # data (simulation: how the dataset is cut into silos; deployment: the server's test set)
    dataset: DatasetName = Field("digits", description="the data")
    dataset_root: str = Field("", description="folder of the cifar/imagefolder files")
    class_names: str = Field(
        "",
        max_length=1_000_000,
        description="imagefolder: the label space, comma-separated (empty: the class folders)",
    )
    in_channels: int = Field(0, ge=0, le=3, description="imagefolder: 1 or 3 (0: 3)")
    image_size: int = Field(
        0, ge=0, le=4096, description=f"imagefolder: input side (0: {DEFAULT_IMAGEFOLDER_SIZE})"
    )
    split: str = Field("class", description="class | iid | dirichlet:BETA")
    num_silos: int = Field(5, ge=1, le=10_000, description="number of silos the data is cut into")
    increments: int = Field(
        2, ge=1, le=10_000, description="data increments per silo; increment i arrives in round i+1"
    )
    seed: int = _as_in(
        TrainConfig, "seed", description="seed of the split, the base and the training"
    )
    public_fraction: float = Field(
        0.2, ge=0.0, le=0.9, description="share of the training set held out as the public split"
    )
    public_classes: str = Field(
        "", description="classes of the public split, comma-separated (empty: all)"
    )
    # base model
    architecture: ArchitectureName = Field("small-cnn", description="base architecture")
    base_weights: str = Field(
        "pretrained", description="pretrained | init | file:PATH | hub:NAME | packaged[:NAME]"
    )
    tangent: str = Field("full", description="full | last-stage | all | MODULE,...")
    # rounds
    rounds: int = Field(
        2, ge=0, le=100_000, description="rounds in this run (numbering continues; 0: continual)"
    )
    round_interval: float = Field(
        60.0, ge=0.0, le=86_400.0, description="continual: seconds between checks for new data"
    )
    max_idle_rounds: int = Field(
        0, ge=0, le=10**9, description="continual: stop after this many skipped rounds (0: never)"
    )
    min_silos: int = Field(1, ge=1, le=100_000, description="silos a round waits for")
    wait_seconds: float = Field(
        60.0, gt=0.0, le=86_400.0, description="how long a round waits for min-silos, in s"
    )
    hello_timeout: float = Field(
        300.0, gt=0.0, le=86_400.0, description="how long a silo has to introduce itself, in s"
    )
    round_timeout: float = Field(
        1800.0, gt=0.0, le=604_800.0, description="how long a round waits for results, in s"
    )
    # local training
    epochs: int = _as_in(TrainConfig, "epochs")
    lr: float = _as_in(TrainConfig, "lr")
    batch_size: int = _as_in(TrainConfig, "batch_size")
    loss: LossName = _as_in(TrainConfig, "loss")
    kappa: float = _as_in(TrainConfig, "kappa")
    penalty: float = _as_in(TrainConfig, "penalty")
    client_device: str = _as_in(TrainConfig, "device")
    # differential privacy per silo (DP-SGD, common.training.privacy); each silo sets its
    # noise for its own number of examples
    dp_epsilon: float = _as_in(PrivacyConfig, "target_epsilon")
    dp_delta: float = _as_in(PrivacyConfig, "delta")
    dp_clip: float = _as_in(PrivacyConfig, "clip")
    dp_noise_multiplier: float = _as_in(PrivacyConfig, "noise_multiplier")
    # composition and acceptance
    weighting: Weighting = Field(
        "uniform", description="weights of the components (uniform: αᵢ = 1/n)"
    )
    max_norm: float = Field(1e4, gt=0.0, description="components with a larger ‖Δ‖ are refused")
    upload_dtype: Encoding = Field(UNENCODED, description="how silos upload Δ")
    require_authenticated_silos: bool = Field(
        False, description="refuse nodes without a registered name (deployment with auth)"
    )
    # evaluation
    evaluate_server: bool = Field(True, description="score each round's model on the server")
    evaluate_federated: bool = Field(True, description="silos score each round's model too")

    @field_validator("split")
    @classmethod
    def _split(cls, value: str) -> str:
        return str(SplitSpec.parse(value))

    @field_validator("class_names")
    @classmethod
    def _class_names(cls, value: str) -> str:
        return ",".join(p.strip() for p in value.split(",") if p.strip())

    @field_validator("public_classes")
    @classmethod
    def _classes(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise ValueError("public-classes must be comma-separated class labels, e.g. '0,1,2'")
        return ",".join(parts)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def known_keys(cls) -> tuple[str, ...]:
        """The run-config keys, hyphenated as in TOML, sorted."""
        return tuple(sorted(_hyphen(name) for name in cls.model_fields))

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> FederationConfig:
        """Validate Flower's flat run config; unknown keys and bad values name themselves
        (an unknown key with the closest known ones, or all of them)."""
        try:
            return cls.model_validate(dict(run_config))
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            raise ConfigError(f"invalid run config: {problems}") from None

    def to_run_config(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    @property
    def continual(self) -> bool:
        """``rounds = 0``: rounds go on until the run is stopped (see server.federation)."""
        return self.rounds == 0

    # -- derived specs -----------------------------------------------------------------------

    @property
    def registry_path(self) -> Path:
        return Path(self.registry).expanduser()

    def dataset_spec(self) -> DatasetSpec:
        """The server's dataset (simulated silos are cut from it, the server tests on it)."""
        root = Path(self.dataset_root).expanduser() if self.dataset_root else None
        if self.dataset == "imagefolder" and root is None:
            raise ConfigError(
                "dataset imagefolder has no dataset-root here: the silos hold the images; "
                "the server has none to cut or test on"
            )
        size = self.image_size or None if self.dataset == "imagefolder" else None
        return DatasetSpec(name=self.dataset, root=root, image_size=size)

    def test_dataset_spec(self) -> DatasetSpec | None:
        """The server's test data, or None for an image-folder federation without any."""
        if self.dataset == "imagefolder" and not self.dataset_root:
            return None
        return self.dataset_spec()

    def data_spec(self) -> DataSpec:
        """The federation's label space and input spec (see ``common.data.inputs``)."""
        names = tuple(self.class_names.split(",")) if self.class_names else None
        channels = self.in_channels or None
        if self.dataset != "imagefolder":
            if names or channels or self.image_size:
                raise ConfigError(
                    "class-names, in-channels and image-size apply to dataset imagefolder; "
                    f"{self.dataset!r} has its own classes and input size"
                )
            return dataset_data_spec(self.dataset_spec())
        if not self.dataset_root:
            if names is None:
                raise ConfigError(
                    "an imagefolder federation without dataset-root needs class-names "
                    "(its label space, comma-separated, e.g. 'cat,dog,bird')"
                )
            size = self.image_size or DEFAULT_IMAGEFOLDER_SIZE
            try:
                return DataSpec(
                    classes=names, input=folder_input(channels=channels or 3, size=size)
                )
            except ValueError as exc:
                raise ConfigError(f"invalid class-names: {exc}") from exc
        return dataset_data_spec(self.dataset_spec(), classes=names, channels=channels)

    def public_class_tuple(self) -> tuple[int, ...] | None:
        return (
            tuple(int(c) for c in self.public_classes.split(",")) if self.public_classes else None
        )

    def partition_spec(self) -> PartitionSpec:
        return PartitionSpec(
            split=self.split,
            num_silos=self.num_silos,
            num_increments=self.increments,
            seed=self.seed,
            public_fraction=self.public_fraction,
            public_classes=self.public_class_tuple(),
        )

    def weights_spec(self) -> WeightsSpec:
        kind, _, argument = self.base_weights.partition(":")
        if kind == "pretrained" and not argument:
            if self.public_fraction == 0:
                raise ConfigError(
                    "base-weights=pretrained pre-trains θ0 on the public split, but "
                    "public-fraction is 0 (no public split): set public-fraction > 0, or use "
                    "base-weights=init or file:PATH"
                )
            return PretrainedWeights(
                dataset=self.dataset_spec(),
                public_fraction=self.public_fraction,
                public_classes=self.public_class_tuple(),
                split_seed=self.seed,
                seed=self.seed,
            )
        if kind == "init" and not argument:
            return InitWeights(seed=self.seed)
        if kind == "file" and argument:
            return FileWeights(path=Path(argument).expanduser())
        if kind == "hub" and argument:
            return TorchHubWeights(name=argument)
        if kind == "packaged":
            return PackagedWeights(name=argument or "imagenet")
        raise ConfigError(
            f"base-weights {self.base_weights!r} is not one of "
            "pretrained, init, file:PATH, hub:NAME, packaged[:NAME]"
        )

    def tangent_scope(self) -> Literal["full", "last-stage", "all"] | tuple[str, ...]:
        if self.tangent == "full":
            return "full"
        if self.tangent == "last-stage":
            return "last-stage"
        if self.tangent == "all":
            return "all"
        return tuple(p.strip() for p in self.tangent.split(",") if p.strip())

    def base_spec(self, data: DataSpec | None = None) -> BaseModelSpec:
        """The base θ0 is built from; ``data`` saves recomputing :meth:`data_spec`."""
        data = data or self.data_spec()
        return BaseModelSpec(
            architecture=self.architecture,
            num_classes=data.num_classes,
            in_channels=data.input.channels,
            weights=self.weights_spec(),
            head_seed=self.seed,
            tangent=self.tangent_scope(),
        )

    def privacy_config(self) -> PrivacyConfig | None:
        """DP-SGD's settings, or None when both dp-epsilon and dp-noise-multiplier are 0."""
        if not (self.dp_epsilon or self.dp_noise_multiplier):
            return None
        return PrivacyConfig(
            target_epsilon=self.dp_epsilon,
            delta=self.dp_delta,
            clip=self.dp_clip,
            noise_multiplier=self.dp_noise_multiplier,
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            loss=self.loss,
            kappa=self.kappa,
            penalty=self.penalty,
            seed=self.seed,
            device=self.client_device,
            privacy=self.privacy_config(),
        )
