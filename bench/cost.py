"""What does composition cost? Inference, compose and forget, upload bytes, round overhead.

    python -m bench.cost [--quick] [--json] [--device cpu|cuda|auto] [--out DIR]
                         [--skip inference,registry,bytes,flower] [--threads N]

* Inference (``bench.cost_inference``): the composed tangent model vs the ensemble of N
  non-linear models, N ∈ {1, 2, 5, 10, 20}, for ResNet-18 and the small CNN, side by side
  (interleaved repetitions, median), with FLOP ratios;
* the registry on disk (``bench.cost_registry``): compose and forget with N registered
  components of 1 M parameters each, N ∈ {10, 100} (quick) or {10, 100, 1000};
* bytes uploaded per component vs the full model, and the Flower round overhead in
  simulation (``bench.cost_federation``).

Results: ``bench/results/cost.json`` (``cost_quick.json`` with ``--quick``; ``_cuda`` is
appended on a GPU), the same stem with ``.md`` (tables and targets) and two PNG plots.
``--device cuda`` on a machine without CUDA skips (one line on stderr, exit status 0).
On the CPU the run uses one torch thread unless ``--threads`` says otherwise (see
``_default_threads``); the machine and thread count are part of the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.cost_federation import measure_round_overhead, measure_upload_bytes
from bench.cost_inference import measure_inference
from bench.cost_registry import measure_registry
from bench.cost_report import check_targets, markdown, plot_inference, plot_registry
from bench.machine import describe_machine
from tmc.common.device import resolve_device
from tmc.common.errors import ConfigError

RESULTS = Path(__file__).parent / "results"
SECTIONS = ("inference", "registry", "bytes", "flower")


@dataclass(frozen=True)
class CostSettings:
    """Sizes and repetitions of one run (``quick()`` and ``full()`` are the CLI's)."""

    counts: tuple[int, ...] = (1, 2, 5, 10, 20)
    resnet_batch: int = 32
    resnet_size: int = 64
    small_batch: int = 256
    small_size: int = 8
    reps: int = 10
    warmup: int = 2
    registry_counts: tuple[int, ...] = (10, 100, 1000)
    parameters: int = 1_000_000
    compose_reps: int = 3
    registry_reps: int = 9
    registry_warmup: int = 1
    flower_silos: int = 3
    flower_rounds: int = 5
    flower_epochs: int = 2
    sections: tuple[str, ...] = SECTIONS
    threads: int | None = None
    """torch threads during the run (restored after it); None leaves torch's setting."""

    @classmethod
    def full(cls, device: torch.device) -> CostSettings:
        return cls(threads=_default_threads(device))

    @classmethod
    def quick(cls, device: torch.device) -> CostSettings:
        """A few minutes on 2 CPU cores: 5 repetitions, N ≤ 100 components in the registry,
        3 rounds."""
        return cls(
            threads=_default_threads(device),
            reps=5,
            warmup=1,
            registry_counts=(10, 100),
            registry_reps=5,
            flower_rounds=3,
            flower_epochs=1,
        )


def _default_threads(device: torch.device) -> int | None:
    """One torch thread on the CPU: on a shared, loaded machine, an intra-op thread pool
    waits at every operator for its slowest (descheduled) thread, and times no longer follow
    the work (measured: a ResNet-18 batch 25× slower with 2 threads than with 1 at a load
    of 8 on 2 cores). Ratios between candidates are what this benchmark reports."""
    return 1 if device.type == "cpu" else None


def run(settings: CostSettings, *, device: torch.device, quick: bool) -> dict[str, Any]:
    """Every section of ``settings.sections``; the targets are checked on what was run."""
    previous = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        return _run(settings, device=device, quick=quick)
    finally:
        torch.set_num_threads(previous)


def _run(settings: CostSettings, *, device: torch.device, quick: bool) -> dict[str, Any]:
    start = time.perf_counter()
    torch.manual_seed(0)
    result: dict[str, Any] = {
        "quick": quick,
        "device": str(device),
        "machine": describe_machine(device),
        "settings": dataclasses.asdict(settings),
    }
    if "inference" in settings.sections:
        common = {
            "counts": settings.counts,
            "reps": settings.reps,
            "warmup": settings.warmup,
            "device": device,
        }
        result["resnet18"] = measure_inference(
            "resnet18",
            channels=3,
            batch=settings.resnet_batch,
            size=settings.resnet_size,
            **common,  # type: ignore[arg-type]
        )
        result["small_cnn"] = measure_inference(
            "small-cnn",
            channels=1,
            batch=settings.small_batch,
            size=settings.small_size,
            **common,  # type: ignore[arg-type]
        )
        result["inference_tmc_over_ensemble"] = result["resnet18"]["inference_tmc_over_ensemble"]
        result["inference_flop_ratio"] = result["resnet18"]["flop_ratio"]
    with tempfile.TemporaryDirectory(prefix="tmc-cost-") as tmp:
        workdir = Path(tmp)
        if "registry" in settings.sections:
            registry = measure_registry(
                settings.registry_counts,
                workdir=workdir / "registry",
                parameters=settings.parameters,
                compose_reps=settings.compose_reps,
                reps=settings.registry_reps,
                warmup=settings.registry_warmup,
            )
            result["registry"] = registry
            for key in ("compose_seconds", "compose_incremental_seconds", "forget_seconds"):
                result[key] = registry[key]
        if "bytes" in settings.sections:
            result["upload_bytes"] = measure_upload_bytes()
            result["bytes_per_component"] = {
                model: {scope: d["bytes_per_component"] for scope, d in scopes.items()}
                for model, scopes in result["upload_bytes"].items()
            }
        if "flower" in settings.sections:
            result["flower_round_overhead"] = measure_round_overhead(
                workdir / "flower",
                silos=settings.flower_silos,
                rounds=settings.flower_rounds,
                epochs=settings.flower_epochs,
                device=device.type,
            )
    result["targets"] = check_targets(result)
    result["seconds"] = time.perf_counter() - start
    return result


def write_results(result: dict[str, Any], out: Path) -> list[Path]:
    """``cost[_quick][_cuda].json``, ``.md`` and the two plots under ``out``."""
    stem = "cost" + ("_quick" if result["quick"] else "")
    stem += "_cuda" if str(result["device"]).startswith("cuda") else ""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(markdown(result))
    inference = plot_inference(result, out / f"{stem}_inference.png")
    if inference is not None:
        paths.append(inference)
    if result.get("registry"):
        paths.append(plot_registry(result["registry"], out / f"{stem}_registry.png"))
    return paths


def _sections(text: str) -> tuple[str, ...]:
    skipped = {s.strip() for s in text.split(",") if s.strip()}
    unknown = skipped - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown sections {sorted(unknown)}: use {SECTIONS}")
    return tuple(s for s in SECTIONS if s not in skipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cost", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a few minutes on 2 CPU cores")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    parser.add_argument(
        "--skip", type=_sections, default=SECTIONS, dest="sections", metavar="SECTIONS",
        help=f"comma-separated sections to leave out, of {','.join(SECTIONS)}",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch threads (default: 1 on the CPU, see _default_threads; torch's on CUDA)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ConfigError as exc:
        print(f"bench.cost: skipped: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"skipped": str(exc)}))
        return 0
    base = CostSettings.quick(device) if args.quick else CostSettings.full(device)
    settings = dataclasses.replace(base, sections=args.sections)
    if args.threads is not None:
        settings = dataclasses.replace(settings, threads=args.threads)
    result = run(settings, device=device, quick=args.quick)
    paths = write_results(result, args.out)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(markdown(result))
        print("written: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
