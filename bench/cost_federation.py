"""What a silo uploads, and what a Flower round costs beyond the silos' training.

* Bytes: one component (Δ of the tangent parameters) as the registry stores it
  (safetensors + canonical JSON metadata) and as it travels in the Flower reply (the
  ``ArrayRecord``'s serialised arrays), next to the full θ0 state dict as safetensors
  (what a FedAvg-style upload of the whole model would weigh), for ``small-cnn`` and
  ``resnet18`` with ``full`` and ``last-stage`` tangent scopes; and per upload encoding
  (float32, bfloat16, int8, int8 per channel): the stored component and the whole Flower
  reply as Flower counts it (``RecordDict`` records' ``count_bytes``).
* Flower round overhead: a small federation in Flower's simulation engine (Ray); for each
  round, its wall time minus the slowest silo's own training time (discovery, messaging,
  validation, registry commit). Server and federated evaluation are turned off so that
  they do not count as overhead. Round 1 also starts the simulated nodes (Ray actors, the
  ClientApp's imports), greets them and sends θ0: it is reported apart from the median of
  the later rounds.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_save

from tmc.common.components import ENCODINGS, Component, ComponentMeta, Delta, component_to_bytes
from tmc.common.federation.config import FederationConfig
from tmc.common.federation.records import component_to_content, content_bytes, tensors_to_arrays
from tmc.common.models import BaseModelSpec, materialize

BYTE_MODELS = (("small-cnn", 1, "small_cnn"), ("resnet18", 3, "resnet18"))
SCOPES = (("full", "full"), ("last-stage", "last_stage"))


def _upload(architecture: str, channels: int, scope: str) -> dict[str, Any]:
    spec = BaseModelSpec(
        architecture=architecture,
        num_classes=10,
        in_channels=channels,
        tangent=scope,
    )
    base = materialize(spec)
    generator = torch.Generator().manual_seed(0)
    delta = Delta(
        {
            n: 0.01 * torch.randn(shape, generator=generator)
            for n, (shape, _) in base.tangent_shapes().items()
        }
    )
    per_encoding: dict[str, dict[str, float]] = {}
    for encoding in ENCODINGS:
        meta = ComponentMeta(
            base_sha256=base.sha256, silo="silo-0", num_examples=1, encoding=encoding
        )
        encoded = Component.encoded(delta, meta)
        per_encoding[encoding] = {
            "component_bytes": len(component_to_bytes(encoded)),
            "reply_bytes": content_bytes(component_to_content(encoded)),
        }
    for entry in per_encoding.values():
        entry["float32_over_this"] = per_encoding["float32"]["component_bytes"] / max(
            1.0, entry["component_bytes"]
        )
    stored = int(per_encoding["float32"]["component_bytes"])
    wire = sum(len(array.data) for array in tensors_to_arrays(delta).values())
    state = {k: v.contiguous() for k, v in base.theta0().items()}
    theta0 = len(safetensors_save(state))
    total_parameters = sum(p.numel() for p in base.network.parameters())
    return {
        "tangent_parameters": base.num_tangent_parameters,
        "model_parameters": int(total_parameters),
        "component_bytes": stored,
        "component_wire_bytes": wire,
        "theta0_bytes": theta0,
        "component_over_theta0": stored / theta0,
        "bytes_per_component": per_encoding,
    }


def measure_upload_bytes() -> dict[str, dict[str, Any]]:
    """Keyed by model (``small_cnn``, ``resnet18``) then scope (``full``, ``last_stage``)."""
    return {
        key: {label: _upload(arch, channels, scope) for scope, label in SCOPES}
        for arch, channels, key in BYTE_MODELS
    }


def measure_round_overhead(
    workdir: Path,
    *,
    silos: int = 3,
    rounds: int = 2,
    epochs: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """Per round: seconds, slowest silo's training seconds and their difference, for a
    ``small-cnn`` federation on ``digits`` (IID split, one increment per round)."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    from tmc.simulation import simulate  # imports Flower and Ray: only when asked

    config = FederationConfig.from_run_config(
        {
            "registry": str(workdir / "federation"),
            "num-silos": silos,
            "min-silos": silos,
            "split": "iid",
            "kappa": 5.0,
            "rounds": rounds,
            "increments": rounds,
            "epochs": epochs,
            "base-weights": "init",
            "client-device": device,
            "evaluate-server": False,
            "evaluate-federated": False,
            "wait-seconds": 300.0,
        }
    )
    summaries = simulate(config)
    per_round = [
        {
            "round": s.round,
            "accepted": len(s.accepted),
            "seconds": s.seconds,
            "slowest_training_seconds": s.slowest_training_seconds,
            "overhead_seconds": s.seconds - s.slowest_training_seconds,
        }
        for s in summaries
    ]
    overheads = [float(r["overhead_seconds"]) for r in per_round]
    return {
        "silos": silos,
        "rounds": rounds,
        "epochs": epochs,
        "device": device,
        "completed": len(per_round) == rounds and all(r["accepted"] == silos for r in per_round),
        "per_round": per_round,
        "first_round_overhead_seconds": overheads[0] if overheads else None,
        "overhead_seconds_median_after_first": (
            statistics.median(overheads[1:]) if len(overheads) > 1 else None
        ),
    }
