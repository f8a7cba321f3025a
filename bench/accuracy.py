"""Accuracy benchmark: TMC against the ensemble, the model soup, Flower's FedAvg, sequential
fine-tuning and the paragon, under the fairness protocol of docs/notes/benchmarks.md.

    python -m bench.accuracy --quick            # about 20 minutes on 2 CPU cores
    python -m bench.accuracy                    # full mode: hours on 2 CPU cores
    python -m bench.accuracy --quick --json     # {"<split>-<silos>": {"tmc": acc, ...}, ...}
    python -m bench.accuracy --base lite0       # the strong pre-trained backbone (mnist5k)

Writes ``bench/results/accuracy_quick.{json,md}`` and ``accuracy_quick*.png`` (quick) or
``accuracy.{json,md}`` and ``accuracy*.png`` (full); ``accuracy_lite0*`` for ``--base
lite0`` (EfficientNet-Lite0 with ImageNet weights on mnist5k, ``bench.accuracy_backbone``;
needs the ``pretrained`` extra). Progress goes to stderr. What each
mode runs is :func:`settings_for`; docs/benchmarks/accuracy.md summarises it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.accuracy_cache import ResultCache
from bench.accuracy_fedavg import FedAvgJob, run_fedavg
from bench.accuracy_methods import SKIPPABLE, LrRun, Outputs, run_in_process
from bench.accuracy_report import json_summary, markdown, targets, write_plots
from bench.accuracy_select import Json, aggregate, summarize_seed
from bench.accuracy_setup import BaseKind, Scenario, prepare
from bench.accuracy_simcheck import simulate_check
from tmc.common.errors import ConfigError, TMCError
from tmc.common.threads import torch_threads

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    """What one run of the benchmark covers."""

    mode: str
    bases: tuple[BaseKind, ...]
    splits: tuple[str, ...]
    silos: tuple[int, ...]
    seeds: int
    epochs: int
    rounds: int
    lrs: tuple[float, ...]
    dataset: str = "digits"
    data_root: str = ""
    base_weights: str = ""
    fedavg: bool = True
    simulate_check: bool = True
    device: str = "cpu"
    threads: int = 1
    loss_classes: str = "all"
    skip: tuple[str, ...] = ()

    def scenarios(self) -> tuple[list[Scenario], list[str]]:
        """Every (configuration, seed) to run, and the configurations skipped, with why."""
        chosen, skipped = [], []
        classes = 10 if self.dataset in ("digits", "cifar10", "mnist5k") else 100
        for base in self.bases:
            for split in self.splits:
                for silos in self.silos:
                    first = Scenario(
                        split,
                        silos,
                        0,
                        base,
                        self.dataset,
                        self.data_root,
                        self.base_weights,
                        loss_classes=self.loss_classes,
                    )
                    if split == "class" and silos > classes:
                        skipped.append(f"{first.config_key}: a class split needs a class per silo")
                        continue
                    chosen += [dataclasses.replace(first, seed=s) for s in range(self.seeds)]
        return chosen, skipped


def settings_for(args: argparse.Namespace) -> Settings:
    """Quick: digits, all-classes base, 3 splits × 5 and 10 silos, 2 seeds, 10 epochs (FedAvg
    5 rounds × 2), learning rates {3e-4, 1e-3}. Full: both bases, 5/10/20 silos,
    3 seeds, 30 epochs (FedAvg 5 × 6), {1e-4, 3e-4, 1e-3, 3e-3}. Flags override."""
    quick = bool(args.quick)
    base = args.base or ("all" if quick else "both")
    bases: tuple[BaseKind, ...] = ("all", "half") if base == "both" else (base,)  # type: ignore[assignment]
    dataset = "mnist5k" if base == "lite0" else args.dataset
    unknown = set(args.skip_methods or ()) - SKIPPABLE
    if unknown:
        raise ConfigError(f"--skip-methods: {sorted(unknown)} cannot be skipped")
    if base == "lite0" and args.dataset not in ("digits", "mnist5k"):
        raise ConfigError("--base lite0 runs on mnist5k; leave --dataset unset")
    return Settings(
        mode="quick" if quick else "full",
        bases=bases,
        splits=tuple(args.splits or ("class", "iid", "dirichlet:0.5")),
        silos=tuple(args.silos or ((5, 10) if quick else (5, 10, 20))),
        seeds=args.seeds or (2 if quick else 3),
        epochs=args.epochs or (10 if quick else 30),
        rounds=args.rounds or 5,
        lrs=tuple(args.lrs or ((3e-4, 1e-3) if quick else (1e-4, 3e-4, 1e-3, 3e-3))),
        dataset=dataset,
        data_root=args.data_root or "",
        base_weights=args.base_weights or "",
        fedavg=not args.no_fedavg,
        simulate_check=not args.no_simulate_check and dataset == "digits",
        device=args.device,
        threads=args.threads,
        loss_classes=args.loss_classes,
        skip=tuple(args.skip_methods or ()),
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(settings: Settings, *, cache: ResultCache | None = None) -> Json:
    """Train and score everything ``settings`` asks for; the JSON-ready results (with
    ``settings.threads`` torch threads, restored afterwards)."""
    with torch_threads(settings.threads):
        return _run_benchmark(settings, cache or ResultCache(None))


def _run_benchmark(settings: Settings, cache: ResultCache) -> Json:
    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    scenarios, skipped = settings.scenarios()
    runs: dict[Scenario, dict[float, LrRun]] = {s: {} for s in scenarios}
    total = len(scenarios) * len(settings.lrs)
    cached_in_process = 0
    for index, (scenario, lr) in enumerate(
        ((s, lr) for s in scenarios for lr in settings.lrs), start=1
    ):
        tick = time.perf_counter()
        key = cache.key(
            "in-process",
            scenario,
            lr=lr,
            epochs=settings.epochs,
            device=settings.device,
            sha=prepare(scenario).base.sha256,
            **({"skip": ",".join(sorted(settings.skip))} if settings.skip else {}),
        )
        run = cache.get(key, LrRun)
        cached_in_process += run is not None
        if run is None:
            run = run_in_process(
                prepare(scenario),
                lr=lr,
                epochs=settings.epochs,
                device=settings.device,
                skip=frozenset(settings.skip),
            )
            run.seconds = time.perf_counter() - tick
            cache.put(key, run)
        runs[scenario][lr] = run
        _log(
            f"[{index}/{total}] {scenario.config_key} seed {scenario.seed} lr {lr:g}: "
            f"tmc val {_val(run, scenario, 'tmc'):.3f} ({run.seconds:.0f} s)"
        )
    in_process_seconds = time.perf_counter() - start
    skipped += method_skips(runs)
    cached_fedavg = _fedavg(settings, runs, cache) if settings.fedavg else 0
    fedavg_seconds = time.perf_counter() - start - in_process_seconds

    configs: dict[str, Json] = {}
    for config_key in dict.fromkeys(s.config_key for s in scenarios):
        group = [s for s in scenarios if s.config_key == config_key]
        seeds = [summarize_seed(prepare(s), runs[s]) for s in group]
        test_size = len(prepare(group[0]).test)
        configs[config_key] = aggregate(seeds, test_size=test_size)
        configs[config_key]["test_size"] = test_size
        first = group[0]
        configs[config_key]["scenario"] = {
            "dataset": first.dataset,
            "base": first.base,
            "split": first.split,
            "num_silos": first.num_silos,
        }
        configs[config_key]["per_seed"] = seeds
    results: Json = {
        "mode": settings.mode,
        "settings": dataclasses.asdict(settings),
        "skipped": skipped,
        "configs": configs,
        "durations_s": {
            "in_process": round(in_process_seconds, 1),
            "fedavg_simulation": round(fedavg_seconds, 1),
        },
        # With --cache, the durations are this process's: say how much it did not compute.
        "from_cache": {
            "in_process": cached_in_process,
            "in_process_of": total,
            "in_process_computed_s": round(
                sum(r.seconds for b in runs.values() for r in b.values()), 1
            ),
            "fedavg": cached_fedavg,
            "fedavg_of": total if settings.fedavg else 0,
        },
    }
    if settings.simulate_check and scenarios:
        check = next((s for s in scenarios if s.split == "class"), scenarios[0])
        lr = configs[check.config_key]["per_seed"][0]["methods"]["tmc"]["lr"]
        _log(f"simulate check: {check.config_key} seed {check.seed} lr {lr:g} through Flower")
        results["simulate_check"] = simulate_check(check, lr=lr, epochs=settings.epochs)
    results["targets"] = targets(results)
    results["durations_s"]["total"] = round(time.perf_counter() - start, 1)
    # Durations on a shared machine depend on what else runs: say how loaded it was.
    results["load_average_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    return results


def method_skips(runs: dict[Scenario, dict[float, LrRun]]) -> list[str]:
    """One line per configuration and method left out of it, with the first reason (the
    report's rows for that method show "–" there)."""
    reasons: dict[tuple[str, str], str] = {}
    for scenario, by_lr in runs.items():
        for lr, run in by_lr.items():
            for method, why in run.skipped.items():
                reasons.setdefault(
                    (scenario.config_key, method),
                    f"{method} in {scenario.config_key} (seed {scenario.seed}, lr {lr:g}): {why}",
                )
    return list(reasons.values())


def _val(run: LrRun, scenario: Scenario, method: str) -> float:
    labels = torch.from_numpy(prepare(scenario).validation.targets.copy())
    logits = run.outputs[method].validation
    return float((logits.argmax(dim=1) == labels).float().mean())


def _fedavg(
    settings: Settings, runs: dict[Scenario, dict[float, LrRun]], cache: ResultCache
) -> int:
    """Runs (or reads from the cache) every FedAvg job into ``runs``; returns how many were
    read from the cache."""

    def key(job: FedAvgJob) -> str:
        return cache.key(
            "fedavg",
            job.scenario,
            lr=job.lr,
            epochs=settings.epochs,
            rounds=settings.rounds,
            sha=prepare(job.scenario).base.sha256,
        )

    jobs = [FedAvgJob(s, lr) for s in runs for lr in settings.lrs]
    todo = []
    for job in jobs:
        cached = cache.get(key(job), Outputs)
        if cached is None:
            todo.append(job)
        else:
            runs[job.scenario][job.lr].outputs["fedavg"] = cached
    _log(f"FedAvg: {len(todo)} runs of {settings.rounds} rounds through Flower's simulation")
    done = 0

    def on_job(job: FedAvgJob, outputs: Outputs) -> None:
        nonlocal done
        done += 1
        cache.put(key(job), outputs)  # as each finishes: an interrupted run resumes here
        _log(
            f"  FedAvg [{done}/{len(todo)}] {job.scenario.config_key} seed "
            f"{job.scenario.seed} lr {job.lr:g}"
        )

    finished = run_fedavg(
        todo,
        rounds=settings.rounds,
        epochs=settings.epochs,
        device=settings.device,
        threads=settings.threads,
        on_job=on_job,
    )
    for job, outputs in finished.items():
        runs[job.scenario][job.lr].outputs["fedavg"] = outputs
    return len(jobs) - len(todo)


def write_results(results: Json, folder: Path) -> list[Path]:
    """``accuracy[_quick].json``, ``.md`` and the PNG plots; the paths written."""
    stem = "accuracy_quick" if results["mode"] == "quick" else "accuracy"
    if tuple(results["settings"]["bases"]) == ("lite0",):
        stem = "accuracy_lite0" + ("_quick" if results["mode"] == "quick" else "")
    if results["settings"].get("loss_classes", "all") != "all":
        stem += f"_{results['settings']['loss_classes']}"
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    plots = write_plots(results, folder, stem)
    md_path.write_text(markdown(results, [p.name for p in plots]))
    return [json_path, md_path, *plots]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="the quick configuration (about 20 minutes on 2 cores)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (quick 2, full 3)")
    parser.add_argument(
        "--base",
        choices=("all", "half", "both", "lite0"),
        help="base(s) θ0; lite0: EfficientNet-Lite0 (ImageNet) on mnist5k",
    )
    parser.add_argument(
        "--skip-methods",
        type=lambda t: [m for m in t.split(",") if m],
        help=f"leave out some of {', '.join(sorted(SKIPPABLE))} (saves time)",
    )
    parser.add_argument(
        "--loss-classes",
        choices=("all", "present"),
        default="all",
        help="TrainConfig.loss_classes of every method (all: the reference's)",
    )
    parser.add_argument("--splits", type=lambda t: t.split(","), help="e.g. class,iid")
    parser.add_argument("--silos", type=_ints, help="e.g. 5,10")
    parser.add_argument("--epochs", type=int, help="local epochs of every method")
    parser.add_argument("--rounds", type=int, help="FedAvg rounds (divides --epochs)")
    parser.add_argument("--lrs", type=_floats, help="learning-rate grid, e.g. 1e-4,1e-3")
    parser.add_argument("--dataset", default="digits", choices=("digits", "cifar10", "cifar100"))
    parser.add_argument("--data-root", help="local copy of CIFAR (never downloaded)")
    parser.add_argument("--base-weights", help="CIFAR: a local resnet18 state-dict file")
    parser.add_argument("--no-fedavg", action="store_true", help="skip the Flower FedAvg runs")
    parser.add_argument("--no-simulate-check", action="store_true", help="skip the check")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--cache", type=Path, help="folder of raw outputs, to resume a run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--render", type=Path, help="rewrite the report and plots of a results JSON; no training"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        results = json.loads(args.render.read_text())
        results["targets"] = targets(results)
        for path in write_results(results, args.out):
            _log(f"wrote {path}")
        return 0
    try:
        settings = settings_for(args)
        results = run_benchmark(settings, cache=ResultCache(args.cache))
    except TMCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bench.machine import describe_machine

    results["machine"] = describe_machine(settings.device if settings.device != "auto" else "cpu")
    for path in write_results(results, args.out):
        _log(f"wrote {path}")
    if args.json:
        print(json.dumps(json_summary(results), indent=1))
    else:
        print(markdown(results, [], tables_only=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
