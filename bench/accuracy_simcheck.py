"""The in-process TMC path against the real federation (``server.federation.simulate``).

The benchmark trains TMC's components in-process (much faster than Ray); this check runs
one configuration through the product's own ServerApp and ClientApps (Flower simulation
engine, SQLite registry) and the in-process path on the same data (each silo's whole
private shard, as the federation uses) with the same config, then compares: the base,
every silo's Δ (bit for bit, else the largest difference), the composed Δ, and the
composed model's test accuracy.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.accuracy_setup import Scenario, prepare
from tmc.common.components import Component, compose
from tmc.common.data import fingerprint
from tmc.common.federation.config import FederationConfig
from tmc.common.models import materialize
from tmc.common.tangent import TangentModel
from tmc.common.training import evaluate, train_tangent
from tmc.server.registry import Registry
from tmc.simulation import simulate


def federation_config(
    scenario: Scenario, *, registry: Path, lr: float, epochs: int
) -> FederationConfig:
    classes = scenario.public_classes()
    return FederationConfig.model_validate(
        {
            "registry": str(registry),
            "dataset": "digits",
            "split": scenario.split,
            "num_silos": scenario.num_silos,
            "increments": 1,
            "seed": scenario.seed,
            "public_classes": ",".join(str(c) for c in classes) if classes else "",
            "rounds": 1,
            "min_silos": scenario.num_silos,
            "epochs": epochs,
            "lr": lr,
            "kappa": scenario.kappa(),
            "client_device": "cpu",
            "weighting": "uniform",
            "evaluate_federated": False,
        }
    )


def _max_abs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def simulate_check(
    scenario: Scenario, *, lr: float, epochs: int, workdir: Path | None = None
) -> dict[str, Any]:
    """Run ``scenario`` (digits only) both ways; a JSON-ready report of the comparison."""
    prepared = prepare(scenario)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        config = federation_config(scenario, registry=Path(tmp) / "registry", lr=lr, epochs=epochs)
        start = time.perf_counter()
        (summary,) = simulate(config)
        simulate_seconds = time.perf_counter() - start
        with Registry.open(config.registry_path) as registry:
            by_silo: dict[str, Component] = {
                r.silo: registry.get_component(r.id)
                for r in registry.list_components(status="active")
            }
            composed_sim = registry.composed_delta()

    base = materialize(config.base_spec())
    model = TangentModel(base.network, base.tangent_names)
    recipe = config.train_config()
    start = time.perf_counter()
    local: list[Component] = []
    same_data = []
    for silo in range(scenario.num_silos):
        shard = prepared.partition.silo_shard(silo, 0)
        delta, _ = train_tangent(model, shard, recipe)
        meta = by_silo[f"silo-{silo}"].meta  # the same metadata: equal ids iff equal Δ
        same_data.append(meta.data_fingerprint == fingerprint(shard))
        local.append(Component(delta, meta))
    in_process_seconds = time.perf_counter() - start
    composed_local = compose(local, config.weighting)
    model.load_delta(dict(composed_local))
    local_accuracy = evaluate(model, prepared.test, device="cpu").accuracy

    sim_components = [by_silo[c.meta.silo] for c in local]
    return {
        "config": scenario.config_key,
        "seed": scenario.seed,
        "lr": lr,
        "epochs": epochs,
        "same_base": base.sha256 == prepared.base.sha256,
        "components": len(sim_components),
        "same_data": all(same_data),
        "components_identical": [c.id == s.id for c, s in zip(local, sim_components, strict=True)],
        "max_abs_component_difference": max(
            _max_abs(dict(c.delta), dict(s.delta))
            for c, s in zip(local, sim_components, strict=True)
        ),
        "composed_identical": composed_local.equal(composed_sim),
        "max_abs_composed_difference": _max_abs(dict(composed_local), dict(composed_sim)),
        "simulate_accuracy": summary.accuracy,
        "in_process_accuracy": local_accuracy,
        "simulate_seconds": round(simulate_seconds, 1),
        "in_process_seconds": round(in_process_seconds, 1),
    }
