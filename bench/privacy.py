"""Accuracy of the composed model under differential privacy per silo, and with int8 uploads.

    python -m bench.privacy --quick          # digits: class-5, iid-5, half:class-5; 2 seeds
    python -m bench.privacy --quick --json   # {"<split>-<silos>": {"float32": acc, ...}}
    python -m bench.privacy                  # full: 3 seeds, 30 epochs

Every silo of a split trains one tangent component on all of its data, the components are
composed with uniform weights (TMC) and the composition is scored on the test split:

- ``theta0``: the pre-trained base alone (Δ = 0), for reference: the built-in base is
  pre-trained on a public 20 % of every class and is already strong on digits; the
  ``half:`` configs use the base pre-trained on classes 0-4 only, which the silos must teach
  classes 5-9 (the harder base of docs/notes/benchmarks.md);
- ``float32``: the components as trained (no DP);
- ``int8``: the same components uploaded as ``upload-dtype int8`` (one scale per tensor,
  ``common.components.encode``): training is unchanged, only the upload is quantised;
- ``dp-E``: DP-SGD per silo at ε = E (δ = 1e-5, clip 1), each silo calibrating σ to its own
  number of examples (``common.training.privacy``).

Same hyper-parameters for every row (the digits preset: AdamW lr 1e-3, batch 32; κ = 15 on
class splits, 5 on IID); none is tuned for DP. Writes ``bench/results/privacy_quick.{json,md}``
(quick) or ``privacy.{json,md}``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmc.common.components import Component, ComponentMeta, compose
from tmc.common.data import DatasetSpec, FederatedPartition, PartitionSpec
from tmc.common.models import BaseModelSpec, materialize
from tmc.common.tangent import TangentModel
from tmc.common.threads import torch_threads
from tmc.common.training import PrivacyConfig, TrainConfig, evaluate, train_tangent

RESULTS = Path(__file__).resolve().parent / "results"
DELTA = 1e-5
CLIP = 1.0
HALF_CLASSES = (0, 1, 2, 3, 4)
Json = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    mode: str
    configs: tuple[str, ...]
    """``<split>`` (the built-in base) or ``half:<split>`` (base pre-trained on 0-4)."""
    silos: int
    seeds: int
    epochs: int
    epsilons: tuple[float, ...]
    threads: int = 1

    @property
    def rows(self) -> tuple[str, ...]:
        return ("theta0", "float32", "int8", *(f"dp-{e:g}" for e in self.epsilons))


def settings_for(args: argparse.Namespace) -> Settings:
    """Quick: class and iid splits of digits into 5 silos and the class split on the half
    base, 2 seeds, 10 epochs, ε ∈ {8, 3, 1}. Full: 3 seeds, 30 epochs (the digits preset)."""
    quick = bool(args.quick)
    return Settings(
        mode="quick" if quick else "full",
        configs=tuple(args.configs.split(",")) if args.configs else ("class", "iid", "half:class"),
        silos=args.silos,
        seeds=args.seeds or (2 if quick else 3),
        epochs=args.epochs or (10 if quick else 30),
        epsilons=tuple(float(e) for e in args.epsilons.split(",")),
        threads=args.threads,
    )


def run_seed(settings: Settings, config_name: str, seed: int) -> Json:
    """Accuracy of every row for one configuration and seed, with each DP row's mean σ."""
    half, _, split = config_name.rpartition(":")
    public = HALF_CLASSES if half == "half" else None
    base = materialize(BaseModelSpec.builtin_digits(seed=seed, public_classes=public))
    partition = FederatedPartition(
        DatasetSpec(name="digits"),
        PartitionSpec(
            split=split,
            num_silos=settings.silos,
            num_increments=1,
            seed=seed,
            public_fraction=0.2,
            public_classes=public,
        ),
    )
    test = partition.test_dataset()
    model = TangentModel(base.network, base.tangent_names)
    kappa = 15.0 if split == "class" else 5.0

    def score(components: list[Component] | None) -> float:
        if components is None:
            model.reset_delta()
        else:
            model.load_delta(dict(compose(components)))
        return evaluate(model, test, device="cpu").accuracy

    def train_all(privacy: PrivacyConfig | None, salt: int) -> tuple[list[Component], Json]:
        parts, sigmas, epsilons, seconds = [], [], [], 0.0
        for silo in range(settings.silos):
            if privacy is not None:  # reproducible noise: a benchmark, not a deployment
                privacy = privacy.model_copy(update={"noise_seed": seed * 10_000 + salt + silo})
            config = TrainConfig(
                epochs=settings.epochs, kappa=kappa, seed=seed, device="cpu", privacy=privacy
            )
            delta, report = train_tangent(model, partition.silo_shard(silo), config)
            seconds += report.seconds
            meta = ComponentMeta(
                base_sha256=base.sha256,
                silo=f"silo-{silo}",
                num_examples=report.num_examples,
                privacy=report.privacy,
            )
            parts.append(Component(delta, meta))
            if report.privacy is not None:
                sigmas.append(report.privacy.noise_multiplier)
                epsilons.append(report.privacy.epsilon)
        info: Json = {"seconds": seconds}
        if sigmas:
            info |= {"sigma": statistics.mean(sigmas), "epsilon": max(epsilons)}
        return parts, info

    out: Json = {"accuracy": {"theta0": score(None)}, "info": {}}
    plain, out["info"]["float32"] = train_all(None, 0)
    out["accuracy"]["float32"] = score(plain)
    int8 = [
        Component.encoded(c.delta, c.meta.model_copy(update={"encoding": "int8"})) for c in plain
    ]
    out["accuracy"]["int8"] = score(int8)
    for index, eps in enumerate(settings.epsilons, start=1):
        privacy = PrivacyConfig(target_epsilon=eps, delta=DELTA, clip=CLIP)
        private, out["info"][f"dp-{eps:g}"] = train_all(privacy, 1000 * index)
        out["accuracy"][f"dp-{eps:g}"] = score(private)
    return out


def aggregate(per_seed: list[Json], rows: tuple[str, ...]) -> Json:
    summary: Json = {}
    for row in rows:
        values = [s["accuracy"][row] for s in per_seed]
        entry: Json = {
            "mean": statistics.mean(values),
            "std": statistics.pstdev(values),
            "seeds": values,
        }
        sigmas = [s["info"][row]["sigma"] for s in per_seed if "sigma" in s["info"].get(row, {})]
        if sigmas:
            entry["sigma"] = statistics.mean(sigmas)
            entry["epsilon"] = max(s["info"][row]["epsilon"] for s in per_seed)
        if row in per_seed[0]["info"]:
            entry["train_seconds"] = statistics.mean(s["info"][row]["seconds"] for s in per_seed)
        summary[row] = entry
    return summary


LABELS = {"theta0": "θ0 alone", "float32": "TMC float32 (no DP)", "int8": "TMC int8 upload"}


def markdown(settings: Settings, results: Json) -> str:
    rows = settings.rows
    label = {r: LABELS.get(r, f"TMC DP ε = {r[3:]}") for r in rows}
    lines = [
        f"# Privacy and upload compression ({settings.mode} mode)",
        "",
        f"digits, {settings.silos} silos per split, {settings.seeds} seeds, "
        f"{settings.epochs} local epochs, digits preset (AdamW lr 1e-3, batch 32), uniform "
        f"composition; DP-SGD at δ = {DELTA:g}, clip {CLIP:g}, σ calibrated per silo to "
        "its own N by the RDP accountant (dp-accounting); mean ± std over seeds, in %. "
        "Config `half:` = base pre-trained on classes 0-4 only.",
        "",
        "| config | " + " | ".join(label[r] for r in rows) + " |",
        "|---" * (len(rows) + 1) + "|",
    ]
    for config, summary in results.items():
        cells = [f"{100 * summary[r]['mean']:.1f} ± {100 * summary[r]['std']:.1f}" for r in rows]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    lines += ["", "Noise multiplier σ (mean over silos and seeds) and training seconds per split:"]
    lines += ["", "| config | " + " | ".join(label[r] for r in rows[1:]) + " |"]
    lines.append("|---" * len(rows) + "|")
    for config, summary in results.items():
        cells = [
            (f"σ {summary[r]['sigma']:.2f}, " if "sigma" in summary[r] else "")
            + (
                f"{summary[r]['train_seconds']:.0f} s"
                if "train_seconds" in summary[r]
                else "the float32 components, quantised"
            )
            for r in rows[1:]
        ]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 10 epochs")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--configs", default="", help="comma-separated (default: class,iid,half:class)"
    )
    parser.add_argument("--silos", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=0, help="0: the mode's")
    parser.add_argument("--epochs", type=int, default=0, help="0: the mode's")
    parser.add_argument("--epsilons", default="8,3,1", help="comma-separated targets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args(argv)
    settings = settings_for(args)
    start = time.perf_counter()
    results: Json = {}
    with torch_threads(settings.threads):
        for name in settings.configs:
            per_seed = []
            for seed in range(settings.seeds):
                print(f"{name}-{settings.silos} seed {seed}…", file=sys.stderr, flush=True)
                per_seed.append(run_seed(settings, name, seed))
                print(f"  {per_seed[-1]['accuracy']}", file=sys.stderr, flush=True)
            results[f"{name}-{settings.silos}"] = aggregate(per_seed, settings.rows)
    suffix = "_quick" if settings.mode == "quick" else ""
    folder = args.out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "settings": {**settings.__dict__, "delta": DELTA, "clip": CLIP},
        "results": results,
        "seconds": time.perf_counter() - start,
    }
    (folder / f"privacy{suffix}.json").write_text(json.dumps(document, indent=2) + "\n")
    (folder / f"privacy{suffix}.md").write_text(markdown(settings, results))
    if args.json:
        summary = {c: {r: s[r]["mean"] for r in settings.rows} for c, s in results.items()}
        print(json.dumps(summary, indent=2))
    else:
        print(markdown(settings, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
