"""Every in-process method of the accuracy benchmark, at one learning rate, on one scenario.

All of them start from the same θ0, train the same parameters (the base's tangent scope)
with the same loop, loss, penalty and schedule (``common.training``), on the same silo
training parts for the same number of epochs:

* ``tmc`` / ``tmc_weighted``: tangent components (``train_tangent``) composed with
  ``compose(..., "uniform")`` / ``"num-examples"``: the product's own path;
* ``tmc_int8``: those same components uploaded as ``upload-dtype int8`` (one scale a
  tensor), composed from their exact decoding: what compression costs;
* ``tmc_dp``: components trained with DP-SGD at ε = ``DP_EPSILON`` (δ = 1e-5, clip 1, σ
  calibrated by each silo to its own N; ``common.training.privacy``): what privacy costs;
* ``ensemble_softmax`` / ``ensemble_logit``: output average of non-linearly fine-tuned
  components (``finetune``), probabilities or logits;
* ``soup``: uniform weight average of those same non-linear components;
* ``sequential``: one network fine-tuned silo after silo (silo order), no replay;
* ``paragon`` / ``paragon_tangent``: one network / one tangent model trained on the union
  of the silos' training parts.

FedAvg runs through Flower's simulation engine instead (``bench.accuracy_fedavg``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from bench.accuracy_setup import Prepared
from tmc.common.components import Component, ComponentMeta, Delta, ExactSum, compose
from tmc.common.data import LabeledDataset, tensors
from tmc.common.errors import ConfigError
from tmc.common.tangent import TangentModel
from tmc.common.training import (
    OutputEnsemble,
    PrivacyConfig,
    TrainConfig,
    finetune,
    predict_logits,
    train_tangent,
)

METHODS = (
    "tmc",
    "tmc_weighted",
    "tmc_int8",
    "tmc_dp",
    "ensemble_softmax",
    "ensemble_logit",
    "soup",
    "fedavg",
    "sequential",
    "paragon",
    "paragon_tangent",
)
"""Every method the benchmark reports, in table order."""


@dataclass
class Outputs:
    """A model's logits on the pooled validation parts and on the test split."""

    validation: torch.Tensor
    test: torch.Tensor


@dataclass
class TmcChecks:
    """What TMC alone can show, measured on the test split."""

    linearity_max_abs: float
    """max |f_lin(θ0 + mean Δ) − mean of the components' outputs|"""
    forgotten_silo: int = 0
    forget_exact: bool = False
    """ExactSum.remove gave, bit for bit, the composition of the other silos"""
    forgotten_logits: torch.Tensor | None = None
    """test logits of the composition after forgetting ``forgotten_silo``"""


@dataclass
class LrRun:
    """Every in-process method's outputs at one learning rate."""

    lr: float
    outputs: dict[str, Outputs] = field(default_factory=dict)
    checks: TmcChecks | None = None
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    """Methods that could not run here, and why."""


def train_config(prepared: Prepared, *, lr: float, epochs: int, device: str) -> TrainConfig:
    """The local-training recipe every method shares (κ by split, seed by scenario)."""
    scenario = prepared.scenario
    return TrainConfig(
        epochs=epochs,
        lr=lr,
        batch_size=32,
        loss="square",
        kappa=scenario.kappa(),
        loss_classes=scenario.loss_classes,
        seed=scenario.seed,
        device=device,
    )


def outputs_of(model: nn.Module, prepared: Prepared, device: str) -> Outputs:
    validation, _ = predict_logits(model, prepared.validation, device=device)
    test, _ = predict_logits(model, prepared.test, device=device)
    return Outputs(validation=validation, test=test)


def _tangent_outputs(model: TangentModel, delta: Delta, prepared: Prepared, device: str) -> Outputs:
    model.load_delta(dict(delta))
    return outputs_of(model, prepared, device)


def silo_components(
    model: TangentModel, prepared: Prepared, parts: Sequence[LabeledDataset], config: TrainConfig
) -> list[Component]:
    """One tangent component per silo, trained by the product's ``train_tangent``."""
    components = []
    for silo, shard in enumerate(parts):
        delta, report = train_tangent(model, shard, config)
        meta = ComponentMeta(
            base_sha256=prepared.base.sha256,
            silo=f"silo-{silo}",
            classes=tuple(report.label_histogram),
            num_examples=report.num_examples,
        )
        components.append(Component(delta, meta))
    return components


def weight_soup(base: nn.Module, members: Sequence[nn.Module], names: Sequence[str]) -> nn.Module:
    """θ0 with each named parameter replaced by the members' uniform average."""
    soup = copy.deepcopy(base)
    params = dict(soup.named_parameters())
    member_params = [dict(m.named_parameters()) for m in members]
    with torch.no_grad():
        for name in names:
            params[name].copy_(torch.stack([p[name] for p in member_params]).mean(dim=0))
    return soup


def tmc_checks(
    model: TangentModel, components: Sequence[Component], prepared: Prepared, device: str
) -> TmcChecks:
    """The linearity identity, and (class split) forgetting silo 0 exactly."""
    composed = compose(components, "uniform")
    images, _ = tensors(prepared.test)
    model.eval()
    with torch.no_grad():
        together = model(images, dict(composed))
        apart = torch.stack([model(images, dict(c.delta)) for c in components]).mean(dim=0)
    checks = TmcChecks(linearity_max_abs=float((together - apart).abs().max()))
    if prepared.scenario.uses_class_split and len(components) > 1:
        running = ExactSum.of(components)
        running.remove(components[0].delta)
        after = running.mean()
        checks.forget_exact = after.equal(compose(components[1:], "uniform"))
        checks.forgotten_logits = _tangent_outputs(model, after, prepared, device).test
    return checks


SKIPPABLE = frozenset({"sequential", "paragon_tangent", "tmc_dp"})
"""Methods a run may leave out (to save time: none is a target of the benchmark)."""

DP_EPSILON = 3.0
"""The privacy budget of the ``tmc_dp`` row (the middle one of bench.privacy's 1, 3, 8)."""


def int8_uploads(components: Sequence[Component]) -> list[Component]:
    """The components as a silo with ``upload-dtype int8`` would upload them."""
    return [
        Component.encoded(c.delta, c.meta.model_copy(update={"encoding": "int8"}))
        for c in components
    ]


def dp_config(config: TrainConfig, seed: int) -> TrainConfig:
    """``config`` with DP-SGD at ε = DP_EPSILON; seeded noise: a benchmark, not a silo."""
    privacy = PrivacyConfig(target_epsilon=DP_EPSILON, delta=1e-5, clip=1.0, noise_seed=seed)
    return config.model_copy(update={"privacy": privacy})


def run_in_process(
    prepared: Prepared,
    *,
    lr: float,
    epochs: int,
    device: str = "cpu",
    skip: frozenset[str] = frozenset(),
) -> LrRun:
    """Train and score every in-process method at learning rate ``lr`` (but ``skip``)."""
    config = train_config(prepared, lr=lr, epochs=epochs, device=device)
    base = prepared.base
    names = base.tangent_names
    run = LrRun(lr=lr)
    out = run.outputs

    model = TangentModel(base.network, names)
    components = silo_components(model, prepared, prepared.train_parts, config)
    out["tmc"] = _tangent_outputs(model, compose(components, "uniform"), prepared, device)
    out["tmc_weighted"] = _tangent_outputs(
        model, compose(components, "num-examples"), prepared, device
    )
    out["tmc_int8"] = _tangent_outputs(
        model, compose(int8_uploads(components), "uniform"), prepared, device
    )
    if "tmc_dp" not in skip:
        try:
            private = silo_components(
                model, prepared, prepared.train_parts, dp_config(config, prepared.scenario.seed)
            )
        except ConfigError as exc:
            # A silo DP-SGD refuses (fewer examples than a batch: q ≥ 1) would be refused
            # in a federation too: the row is left out of this configuration, not faked.
            run.skipped["tmc_dp"] = str(exc)
        else:
            out["tmc_dp"] = _tangent_outputs(model, compose(private, "uniform"), prepared, device)
    run.checks = tmc_checks(model, components, prepared, device)
    if "paragon_tangent" not in skip:
        paragon_delta, _ = train_tangent(model, prepared.pooled_train, config)
        out["paragon_tangent"] = _tangent_outputs(model, paragon_delta, prepared, device)

    members = [finetune(base.network, names, part, config)[0] for part in prepared.train_parts]
    for mode in ("softmax", "logit"):
        ensemble = OutputEnsemble(members, mode=mode)
        out[f"ensemble_{mode}"] = outputs_of(ensemble, prepared, device)
    out["soup"] = outputs_of(weight_soup(base.network, members, names), prepared, device)

    if "sequential" not in skip:
        sequential: nn.Module = base.network
        for part in prepared.train_parts:
            sequential, _ = finetune(sequential, names, part, config)
        out["sequential"] = outputs_of(sequential, prepared, device)

    paragon, _ = finetune(base.network, names, prepared.pooled_train, config)
    out["paragon"] = outputs_of(paragon, prepared, device)
    return run
