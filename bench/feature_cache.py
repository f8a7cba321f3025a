"""How much faster does a last-stage component train when the frozen part runs once?

    python -m bench.feature_cache [--json] [--epochs 30] [--reps 3] [--device cpu]

For each base, one silo's training data (class split, 5 silos, seed 0) and a tangent
scope (``last-stage``; for EfficientNet-Lite0 also the accuracy benchmark's head conv +
classifier), it trains the same component with ``TrainConfig(cache_features=
False)`` (the frozen part below the first tangent layer runs every epoch) and ``True`` (it
runs once per example; ``common.training.features``), side by side: interleaved
repetitions, median (docs/notes/benchmarks.md). Each repetition also checks that both give the
same Δ bit for bit (on the CPU). Bases: EfficientNet-Lite0 with its packaged ImageNet
weights on ``mnist5k`` (28 px resized to 64 in the network; the ``pretrained`` extra) and
the built-in ``small-cnn`` on ``digits``. Results: ``bench/results/feature_cache.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from bench.machine import describe_machine
from bench.timing import interleaved_medians, paired_ratio
from tmc.common.data import DatasetSpec, FederatedPartition, PartitionSpec, Shard
from tmc.common.models import BaseModelSpec, MaterializedBase, PackagedWeights, materialize
from tmc.common.tangent import TangentModel
from tmc.common.threads import torch_threads
from tmc.common.training import TrainConfig, train_tangent

RESULTS = Path(__file__).resolve().parent / "results"


def _lite_base(
    tangent: Literal["last-stage"] | tuple[str, ...],
) -> tuple[MaterializedBase, DatasetSpec]:
    spec = BaseModelSpec(
        architecture="efficientnet-lite0",
        num_classes=10,
        in_channels=1,
        input_size=64,
        weights=PackagedWeights(),
        tangent=tangent,
    )
    return materialize(spec), DatasetSpec(name="mnist5k")


def _digits_base() -> tuple[MaterializedBase, DatasetSpec]:
    spec = BaseModelSpec.builtin_digits(tangent="last-stage")
    return materialize(spec), DatasetSpec(name="digits")


def measure(
    base: MaterializedBase,
    dataset: DatasetSpec,
    *,
    epochs: int,
    reps: int,
    device: str,
    public_fraction: float,
) -> dict[str, object]:
    partition = FederatedPartition(
        dataset,
        PartitionSpec(split="class", num_silos=5, seed=0, public_fraction=public_fraction),
    )
    shard = Shard(partition.train_set, partition.silo_indices(0))
    model = TangentModel(base.network, base.tangent_names)
    deltas: dict[bool, list[dict[str, torch.Tensor]]] = {False: [], True: []}
    seconds: dict[bool, list[float]] = {False: [], True: []}

    def train(cache: bool) -> None:
        config = TrainConfig(epochs=epochs, lr=1e-3, device=device, cache_features=cache)
        delta, report = train_tangent(model, shard, config)
        deltas[cache].append(dict(delta))
        seconds[cache].append(report.encode_seconds)

    stats = interleaved_medians(
        {"uncached": lambda: train(False), "cached": lambda: train(True)}, reps=reps, warmup=0
    )
    identical = all(
        all(torch.equal(a[n], b[n]) for n in a)
        for a, b in zip(deltas[False], deltas[True], strict=True)
    )
    scope = base.spec.tangent
    return {
        "architecture": base.spec.architecture,
        "tangent": scope if isinstance(scope, str) else ",".join(scope),
        "dataset": dataset.name,
        "path": model.path,
        "tangent_parameters": base.num_tangent_parameters,
        "examples": len(shard),
        "epochs": epochs,
        "uncached_s": stats["uncached"].median_ms / 1e3,
        "cached_s": stats["cached"].median_ms / 1e3,
        "encode_s": sorted(seconds[True])[len(seconds[True]) // 2],
        "speedup": stats["uncached"].median_ms / stats["cached"].median_ms,
        "paired_speedup": 1.0 / paired_ratio(stats["cached"], stats["uncached"]),
        "bit_identical": identical,
        "spread": {k: v.as_dict() for k, v in stats.items()},
    }


def run(*, epochs: int, reps: int, device: str, threads: int) -> dict[str, object]:
    with torch_threads(threads):
        results = []
        # last-stage (layer7: inverted residual + head conv, and fc), then the accuracy
        # benchmark's scope (head conv and fc: bench.accuracy_backbone.TANGENT)
        scopes: tuple[Literal["last-stage"] | tuple[str, ...], ...] = (
            "last-stage",
            ("layer7.1", "fc"),
        )
        for tangent in scopes:
            lite, lite_data = _lite_base(tangent)
            results.append(
                measure(
                    lite, lite_data, epochs=epochs, reps=reps, device=device, public_fraction=0.0
                )
            )
        digits, digits_data = _digits_base()
        results.append(
            measure(
                digits, digits_data, epochs=epochs, reps=reps, device=device, public_fraction=0.2
            )
        )
        machine = describe_machine(device if device != "auto" else "cpu")
    return {"results": results, "reps": reps, "threads": threads, "machine": machine}


def markdown(result: dict[str, object]) -> str:
    machine = result["machine"]
    assert isinstance(machine, dict)
    lines = [
        "# Training one last-stage component with cached features (`python -m "
        "bench.feature_cache`)",
        "",
        f"Median of {result['reps']} interleaved repetitions; {result['threads']} torch "
        f"thread(s); {machine['cpu_model']}, {machine['usable_cores']} cores, device "
        f"{machine['device']}. Silo 0 of a 5-silo class split; lr 1e-3, batch 32.",
        "",
        "| base | tangent | data | path | examples | epochs | uncached s | cached s (of which "
        "encoding) | speed-up | paired speed-up | Δ bit-identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = result["results"]
    assert isinstance(results, list)
    for r in results:
        lines.append(
            f"| {r['architecture']} | {r['tangent']} | {r['dataset']} | {r['path']} | "
            f"{r['examples']} | "
            f"{r['epochs']} | {r['uncached_s']:.1f} | {r['cached_s']:.1f} ({r['encode_s']:.1f}) "
            f"| {r['speedup']:.2f}× | {r['paired_speedup']:.2f}× | "
            f"{'yes' if r['bit_identical'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feature_cache", description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(epochs=args.epochs, reps=args.reps, device=args.device, threads=args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feature_cache.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "feature_cache.md").write_text(markdown(result))
    print(json.dumps(result, indent=1) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
