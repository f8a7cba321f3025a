"""The cost benchmark's markdown report, target checks and plots (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt

INFERENCE_TARGET = 0.35
"""``inference_tmc_over_ensemble`` at N = 10 must not exceed this (paper: 2.5× to 10×)."""
FORGET_GROWTH_TARGET = 2.0
"""``forget_seconds`` at the largest N must not exceed this many times that at N = 10."""


def check_targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with its measured value, its bound and whether it is met (None when the
    run did not measure what it needs)."""
    targets: dict[str, dict[str, Any]] = {}
    ratio = result.get("inference_tmc_over_ensemble", {}).get("10")
    targets["inference_tmc_over_ensemble_at_10"] = {
        "value": ratio,
        "bound": INFERENCE_TARGET,
        "met": None if ratio is None else ratio <= INFERENCE_TARGET,
    }
    forget = result.get("forget_seconds") or {}
    largest = max((int(n) for n in forget), default=None)
    growth = None
    if largest is not None and "10" in forget and largest > 10:
        growth = forget[str(largest)] / forget["10"]
    targets["forget_largest_over_10"] = {
        "value": growth,
        "largest_n": largest,
        "bound": FORGET_GROWTH_TARGET,
        "met": None if growth is None else growth <= FORGET_GROWTH_TARGET,
    }
    return targets


def _fmt_bytes(n: int) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _ms(stats: dict[str, Any]) -> str:
    return f"{stats['median_ms']:.1f} ({stats['min_ms']:.0f}–{stats['max_ms']:.0f})"


def _s(stats: dict[str, Any]) -> str:
    return f"{stats['median_s']:.3f} ({stats['min_s']:.3f}–{stats['max_s']:.3f})"


def _machine_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    gpu = f" ({m['gpu_name']})" if "gpu_name" in m else ""
    return (
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, {m['torch_threads']} "
        f"torch thread{'' if m['torch_threads'] == 1 else 's'}, torch {m['torch_version']}, "
        f"device {m['device']}{gpu}."
    )


def _inference_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Inference: composed tangent model (TMC) vs ensemble of N non-linear models",
        "",
    ]
    for key in ("resnet18", "small_cnn"):
        data = result.get(key)
        if not data:
            continue
        lines.append(
            f"- {data['model']} (tangent scope `{data['tangent']}`): batch {data['batch']}, "
            f"{data['image_size']} px; median of {data['reps']} interleaved repetitions after "
            f"{data['warmup']} warm-up; TMC {data['tmc_gflop']:.3f} GFLOP per batch; ensemble "
            f"members BN-folded: {data['ensemble_bn_folded']}."
        )
    lines += [
        "",
        "| model | N | TMC ms (min–max) | ensemble ms (min–max) | TMC / ensemble (time) | "
        "paired ratio | FLOP ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ("resnet18", "small_cnn"):
        data = result.get(key)
        if not data:
            continue
        for n in data["counts"]:
            k = str(n)
            tmc, ens = data["spread"][f"{k}/tmc"], data["spread"][f"{k}/ensemble"]
            lines.append(
                f"| {data['model']} | {n} | {_ms(tmc)} | {_ms(ens)} | "
                f"{data['inference_tmc_over_ensemble'][k]:.3f} | "
                f"{data['paired_tmc_over_ensemble'][k]:.3f} | {data['flop_ratio'][k]:.3f} |"
            )
    return [*lines, ""]


def _registry_lines(reg: dict[str, Any]) -> list[str]:
    lines = [
        "## Registry on disk: compose and forget with N components registered",
        "",
        f"Each component: {reg['parameters_per_component']:,} float32 parameters "
        f"({_fmt_bytes(reg['component_bytes'])} as stored). Compose from scratch: "
        f"`commit_version` of N pending components, median of {reg['compose_reps']} "
        f"(each from a snapshot of the same state). Forget: `forget(silo=...)` of one silo with "
        f"one component, N active; incremental compose: `commit_version` of one new component "
        f"onto the N − 1 left (back to N); median of {reg['reps']} repetitions after "
        f"{reg['warmup']} warm-up, rotating over N. Every version written is fsynced.",
        "",
        "| N | compose from scratch s (min–max) | incremental compose s (min–max) | "
        "forget s (min–max) | add ms (median) |",
        "|---|---|---|---|---|",
    ]
    for n in reg["counts"]:
        k = str(n)
        spread = reg["spread"]
        lines.append(
            f"| {n} | {_s(spread[f'compose/{k}'])} | {_s(spread[f'compose_incremental/{k}'])} | "
            f"{_s(spread[f'forget/{k}'])} | {reg['add_ms_median'][k]:.0f} |"
        )
    return [*lines, ""]


def _bytes_lines(upload: dict[str, Any]) -> list[str]:
    lines = [
        "## Bytes uploaded per component vs the full model",
        "",
        "| model | tangent scope | tangent / all parameters | component (safetensors) | "
        "Flower reply arrays | full θ0 state dict | component / θ0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, scopes in upload.items():
        for scope, d in scopes.items():
            lines.append(
                f"| {model} | {scope} | {d['tangent_parameters']:,} / {d['model_parameters']:,} "
                f"| {_fmt_bytes(d['component_bytes'])} | {_fmt_bytes(d['component_wire_bytes'])} "
                f"| {_fmt_bytes(d['theta0_bytes'])} | {d['component_over_theta0']:.3f} |"
            )
    lines += [
        "",
        "## Bytes per component by upload encoding (`upload-dtype`)",
        "",
        "| model | tangent scope | encoding | component (safetensors) | Flower reply "
        "(count_bytes) | float32 / this |",
        "|---|---|---|---|---|---|",
    ]
    for model, scopes in upload.items():
        for scope, d in scopes.items():
            for encoding, e in d.get("bytes_per_component", {}).items():
                lines.append(
                    f"| {model} | {scope} | {encoding} | {_fmt_bytes(e['component_bytes'])} | "
                    f"{_fmt_bytes(e['reply_bytes'])} | {e['float32_over_this']:.2f}× |"
                )
    return [*lines, ""]


def _flower_lines(flower: dict[str, Any]) -> list[str]:
    lines = [
        "## Flower round overhead (simulation engine)",
        "",
        f"small-cnn on digits, {flower['silos']} silos × {flower['rounds']} rounds, "
        f"{flower['epochs']} local epoch(s), evaluation off, device {flower['device']}; "
        f"completed: {flower['completed']}. Overhead = round wall time − slowest silo's "
        "training time. Round 1 also starts the simulated nodes (Ray actors, imports), "
        "greets them and sends θ0. Median overhead of the later rounds: "
        + (
            "n/a"
            if flower["overhead_seconds_median_after_first"] is None
            else f"{flower['overhead_seconds_median_after_first']:.2f} s."
        ),
        "",
        "| round | round s | slowest training s | overhead s |",
        "|---|---|---|---|",
    ]
    for r in flower["per_round"]:
        lines.append(
            f"| {r['round']} | {r['seconds']:.2f} | {r['slowest_training_seconds']:.2f} | "
            f"{r['overhead_seconds']:.2f} |"
        )
    return [*lines, ""]


def _target_lines(targets: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Targets", "", "| target | value | bound | met |", "|---|---|---|---|"]
    for name, t in targets.items():
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {name} | {value} | ≤ {t['bound']} | {met} |")
    return [*lines, ""]


def markdown(result: dict[str, Any]) -> str:
    flags = " --quick" if result["quick"] else ""
    lines = [
        "# Cost of composition (`python -m bench.cost" + flags + "`)",
        "",
        _machine_line(result) + f" Whole run: {result['seconds']:.0f} s.",
        "",
    ]
    lines += _target_lines(result["targets"])
    if result.get("resnet18") or result.get("small_cnn"):
        lines += _inference_lines(result)
    if result.get("registry"):
        lines += _registry_lines(result["registry"])
    if result.get("upload_bytes"):
        lines += _bytes_lines(result["upload_bytes"])
    if result.get("flower_round_overhead"):
        lines += _flower_lines(result["flower_round_overhead"])
    return "\n".join(lines).rstrip() + "\n"


def plot_inference(result: dict[str, Any], path: Path) -> Path | None:
    """Median time per batch vs N: TMC (flat) and the ensemble (linear), one panel a model."""
    models = [result[k] for k in ("resnet18", "small_cnn") if result.get(k)]
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), squeeze=False)
    for ax, data in zip(axes[0], models, strict=True):
        counts = data["counts"]
        ax.plot(counts, [data["tmc_ms"][str(n)] for n in counts], "o-", label="TMC (composed)")
        ax.plot(counts, [data["ensemble_ms"][str(n)] for n in counts], "s-", label="ensemble")
        ax.set_xticks(counts)
        ax.set_xlabel("number of components N")
        ax.set_ylabel("median ms per batch")
        ax.set_title(
            f"{data['model']}: batch {data['batch']}, {data['image_size']} px", fontsize=10
        )
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Inference cost vs number of components ({result['device']})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_registry(reg: dict[str, Any], path: Path) -> Path:
    """Compose (from scratch, incremental) and forget seconds vs N, log-log."""
    counts = reg["counts"]
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for key, label, marker in (
        ("compose_seconds", "compose from scratch", "o-"),
        ("compose_incremental_seconds", "compose one more (incremental)", "s-"),
        ("forget_seconds", "forget one silo", "^-"),
    ):
        ax.plot(counts, [reg[key][str(n)] for n in counts], marker, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("components registered N")
    ax.set_ylabel("median seconds")
    ax.set_title(
        f"Registry on disk, {reg['parameters_per_component']:,} parameters per component",
        fontsize=10,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
