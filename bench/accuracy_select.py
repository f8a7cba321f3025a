"""From raw outputs to numbers: learning-rate selection on validation, test scores, and
the mean ± std over seeds.

Selection (docs/notes/benchmarks.md): for each seed and each method, the learning rate whose model
scores best on the pooled validation parts of the silos (ties: lower validation loss);
the test split is scored only for the chosen one. TMC's extras (linearity identity,
forgetting) are read at TMC's chosen rate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from bench.accuracy_methods import METHODS, LrRun
from bench.accuracy_setup import Prepared
from tmc.common.training import score_logits

Json = dict[str, Any]


def stat(values: Sequence[float]) -> Json:
    """mean, sample std (0 for one value) and the values themselves."""
    listed = [float(v) for v in values]
    std = statistics.stdev(listed) if len(listed) > 1 else 0.0
    return {"mean": statistics.fmean(listed), "std": std, "values": listed}


def _labels(dataset: Any) -> torch.Tensor:
    return torch.from_numpy(dataset.targets.copy())


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> float:
    return float((logits.argmax(dim=1)[mask] == labels[mask]).float().mean())


def choose_lr(runs: Mapping[float, LrRun], method: str, val_labels: torch.Tensor) -> float:
    """The rate with the best validation accuracy. Near-perfect validation accuracies tie
    often; ties go to the lower validation cross-entropy (of the softmax of the outputs),
    then to the smaller rate."""
    scored = []
    for lr, run in runs.items():
        if method in run.outputs:
            logits = run.outputs[method].validation
            accuracy = score_logits(logits, val_labels).accuracy
            nll = float(F.cross_entropy(logits, val_labels))
            scored.append((accuracy, -nll, -lr, lr))
    return max(scored)[3]


def summarize_seed(prepared: Prepared, runs: Mapping[float, LrRun]) -> Json:
    """One seed of one configuration: every method at its chosen rate, and TMC's checks."""
    val_labels, test_labels = _labels(prepared.validation), _labels(prepared.test)
    class_split = prepared.scenario.uses_class_split
    tasks = [list(t) for t in prepared.tasks] if class_split else None
    methods: Json = {}
    for method in METHODS:
        if not all(method in run.outputs for run in runs.values()):
            continue
        lr = choose_lr(runs, method, val_labels)
        outputs = runs[lr].outputs[method]
        test = score_logits(outputs.test, test_labels, tasks=tasks)
        methods[method] = {
            "lr": lr,
            "validation": {
                str(r): score_logits(run.outputs[method].validation, val_labels).accuracy
                for r, run in sorted(runs.items())
            },
            "accuracy": test.accuracy,
            "task_accuracy": test.task_accuracy,
        }
    # θ0's hash: the results are reproducible only against the same bytes of θ0.
    summary: Json = {
        "seed": prepared.scenario.seed,
        "base_sha256": prepared.base.sha256,
        "methods": methods,
    }
    checks = runs[methods["tmc"]["lr"]].checks if "tmc" in methods else None
    if checks is not None:
        summary["linearity_max_abs"] = checks.linearity_max_abs
        if checks.forgotten_logits is not None:
            before = runs[methods["tmc"]["lr"]].outputs["tmc"].test
            forgotten = torch.isin(test_labels, torch.tensor(prepared.tasks[checks.forgotten_silo]))
            summary["forgetting"] = {
                "silo": f"silo-{checks.forgotten_silo}",
                "classes": list(prepared.tasks[checks.forgotten_silo]),
                "exact": checks.forget_exact,
                "forgotten_before": _accuracy(before, test_labels, forgotten),
                "forgotten_after": _accuracy(checks.forgotten_logits, test_labels, forgotten),
                "others_before": _accuracy(before, test_labels, ~forgotten),
                "others_after": _accuracy(checks.forgotten_logits, test_labels, ~forgotten),
            }
    return summary


def _noise(tmc: Sequence[float], other: Sequence[float], test_size: int) -> float:
    """What a gap must exceed to count: the larger of the spread of the per-seed gaps and
    the binomial standard error of one accuracy on the test set (√(p(1−p)/N))."""
    gaps = [a - b for a, b in zip(tmc, other, strict=True)]
    spread = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
    p = statistics.fmean(tmc)
    return max(spread, math.sqrt(max(p * (1 - p), 1e-12) / test_size), 1.0 / test_size)


def aggregate(seeds: Sequence[Json], *, test_size: int) -> Json:
    """mean ± std over seeds, error w.r.t. the paragon, TMC's gaps and whether they are
    inside noise, TMC's checks."""
    names = [m for m in METHODS if all(m in s["methods"] for s in seeds)]
    acc = {m: [s["methods"][m]["accuracy"] for s in seeds] for m in names}
    methods: Json = {}
    for m in names:
        entry: Json = {
            "accuracy": stat(acc[m]),
            "lr": [s["methods"][m]["lr"] for s in seeds],
            "validation_by_lr": {
                lr: statistics.fmean(s["methods"][m]["validation"][lr] for s in seeds)
                for lr in seeds[0]["methods"][m]["validation"]
            },
        }
        if "paragon" in acc:
            entry["error_wrt_paragon"] = stat(
                [p - a for p, a in zip(acc["paragon"], acc[m], strict=True)]
            )
        tasks = [s["methods"][m]["task_accuracy"] for s in seeds]
        if all(t is not None for t in tasks):
            entry["task_accuracy"] = stat(tasks)
        methods[m] = entry
    out: Json = {"seeds": [s["seed"] for s in seeds], "methods": methods}
    if "tmc" in acc:
        out["tmc_gaps"] = {
            m: {
                "gap": statistics.fmean(acc["tmc"]) - statistics.fmean(acc[m]),
                "noise": _noise(acc["tmc"], acc[m], test_size),
            }
            for m in names
            if m != "tmc"
        }
        for gap in out["tmc_gaps"].values():
            gap["inside_noise"] = abs(gap["gap"]) <= gap["noise"]
    if all("linearity_max_abs" in s for s in seeds):
        out["linearity_max_abs"] = max(s["linearity_max_abs"] for s in seeds)
    if all("forgetting" in s for s in seeds):
        keys = ("forgotten_before", "forgotten_after", "others_before", "others_after")
        out["forgetting"] = {k: stat([s["forgetting"][k] for s in seeds]) for k in keys}
        out["forgetting"]["exact"] = all(s["forgetting"]["exact"] for s in seeds)
        out["forgetting"]["per_seed"] = [s["forgetting"] for s in seeds]
    return out
