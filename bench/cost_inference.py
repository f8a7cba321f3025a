"""Inference cost of the composed tangent model next to the ensemble of N non-linear models.

TMC serves one tangent model with the composed Δ = Σ αᵢ Δᵢ: one dual-path forward, whatever
N. The non-linear ensemble serves N networks θ0 + Δᵢ (same architecture, different weights)
and averages their logits: N plain forwards. Each member gets its best chance: eval mode,
no grad, and its batch norms folded into the convolutions (``torch.fx`` conv-BN fusion, as
the tangent model folds its own).

For each N, the two candidates are timed side by side (``bench.timing``: interleaved,
rotating order, median after warm-up). The tangent model is measured at every N, with the
composition of that many components, although its cost does not depend on N by
construction. FLOPs of the very calls timed come from ``FlopCounterMode``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.timing import interleaved_medians, paired_ratio
from tmc.common.components import Delta, ExactSum
from tmc.common.models import BaseModelSpec, MaterializedBase, materialize
from tmc.common.tangent import TangentModel

DELTA_SCALE = 0.01
"""Standard deviation of each synthetic Δᵢ (a fine-tuning step from θ0)."""


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (``torch.utils.flop_counter``: convs, matmuls)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def fold_batch_norms(network: nn.Module) -> tuple[nn.Module, bool]:
    """``network`` with eval-mode batch norms folded into their convolutions (``torch.fx``),
    and whether that worked; on a network fx cannot trace, the network itself and False."""
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(network), True
    except Exception:  # pragma: no cover - every zoo network traces today
        return network, False


def _random_delta(base: MaterializedBase, seed: int) -> Delta:
    generator = torch.Generator().manual_seed(seed)
    return Delta(
        {
            name: torch.randn(shape, generator=generator) * DELTA_SCALE
            for name, (shape, _) in base.tangent_shapes().items()
        }
    )


def _member(base: MaterializedBase, delta: Delta, device: torch.device) -> tuple[nn.Module, bool]:
    """One non-linear ensemble member: a copy of the network with θ0 + Δ, BN folded."""
    network = copy.deepcopy(base.network)
    params = dict(network.named_parameters())
    with torch.no_grad():
        for name, value in delta.items():
            params[name].add_(value)
    network.eval()
    folded, ok = fold_batch_norms(network)
    return folded.to(device).eval(), ok


def _build(
    base: MaterializedBase, counts: Sequence[int], device: torch.device
) -> tuple[list[nn.Module], dict[int, dict[str, torch.Tensor]], bool]:
    """max(counts) ensemble members, and the composed Δ (uniform α, exact sum, as the
    registry composes) of the first N components for each N in ``counts``."""
    members: list[nn.Module] = []
    composed: dict[int, dict[str, torch.Tensor]] = {}
    acc = ExactSum({n: shape for n, (shape, _) in base.tangent_shapes().items()})
    folded = True
    for index in range(max(counts)):
        delta = _random_delta(base, seed=1000 + index)
        member, ok = _member(base, delta, device)
        members.append(member)
        folded = folded and ok
        acc.add(delta, 1.0)
        if index + 1 in counts:
            composed[index + 1] = {n: t.to(device) for n, t in acc.mean().items()}
    return members, composed, folded


def measure_inference(
    architecture: str,
    *,
    channels: int,
    batch: int,
    size: int,
    counts: Sequence[int],
    reps: int,
    warmup: int,
    device: torch.device,
    tangent: str = "full",
) -> dict[str, Any]:
    """Times (median ms), time ratios (ratio of medians, and median of paired ratios) and
    FLOP ratios of TMC over the ensemble for each N in ``counts``."""
    spec = BaseModelSpec(
        architecture=architecture,
        num_classes=10,
        in_channels=channels,
        tangent=tangent,
    )
    base = materialize(spec)
    members, composed, folded = _build(base, counts, device)
    model = TangentModel(base.network, base.tangent_names).to(device)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))
    x = x.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def tmc() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    ratios: dict[str, float] = {}
    paired: dict[str, float] = {}
    flop_ratios: dict[str, float] = {}
    tmc_ms: dict[str, float] = {}
    ensemble_ms: dict[str, float] = {}
    ensemble_gflop: dict[str, float] = {}
    spread: dict[str, dict[str, float | int]] = {}
    tmc_flops = 0
    for n in counts:
        model.load_delta(composed[n])  # the deployed model of N components
        chosen = members[:n]

        def ensemble(chosen: list[nn.Module] = chosen) -> torch.Tensor:
            with torch.no_grad():
                total = chosen[0](x)
                for member in chosen[1:]:
                    total = total + member(x)
                return total / len(chosen)

        stats = interleaved_medians(
            {"tmc": tmc, "ensemble": ensemble}, reps=reps, warmup=warmup, sync=sync
        )
        tmc_flops = count_flops(tmc)
        ens_flops = count_flops(ensemble)
        key = str(n)
        ratios[key] = stats["tmc"].median_ms / stats["ensemble"].median_ms
        paired[key] = paired_ratio(stats["tmc"], stats["ensemble"])
        flop_ratios[key] = tmc_flops / ens_flops
        tmc_ms[key] = stats["tmc"].median_ms
        ensemble_ms[key] = stats["ensemble"].median_ms
        ensemble_gflop[key] = ens_flops / 1e9
        spread[f"{key}/tmc"] = stats["tmc"].as_dict()
        spread[f"{key}/ensemble"] = stats["ensemble"].as_dict()
    return {
        "model": architecture,
        "tangent": tangent,
        "batch": batch,
        "image_size": size,
        "reps": reps,
        "warmup": warmup,
        "counts": list(counts),
        "inference_tmc_over_ensemble": ratios,
        "paired_tmc_over_ensemble": paired,
        "flop_ratio": flop_ratios,
        "tmc_ms": tmc_ms,
        "ensemble_ms": ensemble_ms,
        "tmc_gflop": tmc_flops / 1e9,
        "ensemble_gflop": ensemble_gflop,
        "ensemble_bn_folded": folded,
        "tangent_parameters": base.num_tangent_parameters,
        "spread": spread,
    }
