"""The accuracy benchmark's outputs: the targets of the issue checked, the markdown report,
the ``--json`` summary and the plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from bench.accuracy_methods import METHODS
from bench.accuracy_select import Json
from bench.plots import grouped_bars

LABELS = {
    "tmc": "TMC",
    "tmc_weighted": "TMC (by examples)",
    "tmc_int8": "TMC (int8 upload)",
    "tmc_dp": "TMC (DP ε=3)",
    "ensemble_softmax": "ensemble (softmax)",
    "ensemble_logit": "ensemble (logit)",
    "soup": "soup",
    "fedavg": "FedAvg",
    "sequential": "sequential",
    "paragon": "paragon",
    "paragon_tangent": "paragon (tangent)",
}
JSON_KEYS = {"ensemble_softmax": "ensemble"}
"""``--json`` names: the softmax ensemble is the paper's "ensemble"."""
PAPER_ERROR_METHODS = ("ensemble_softmax", "soup", "tmc", "fedavg")
FEASIBILITY = {"class-5": 0.96, "iid-5": 0.98, "half:class-5": 0.81}
"""TMC's accuracy in the feasibility run (docs/notes/benchmarks.md / the issue): at least this."""


def _pct(entry: Json | None, *, signed: bool = False) -> str:
    if entry is None:
        return "–"
    mean, std = 100 * entry["mean"], 100 * entry["std"]
    return f"{mean:+.1f} ± {std:.1f}" if signed else f"{mean:.1f} ± {std:.1f}"


def json_summary(results: Json) -> Json:
    """``{"<split>-<silos>": {"tmc": acc, "ensemble": acc, ...}, ...}`` (mean accuracies)."""
    return {
        key: {
            JSON_KEYS.get(m, m): round(entry["accuracy"]["mean"], 4)
            for m, entry in config["methods"].items()
        }
        for key, config in results["configs"].items()
    }


def _target(text: str, config: str, met: bool, detail: str, *, inside_noise: bool = False) -> Json:
    status = "met" if met else "missed (inside noise)" if inside_noise else "missed"
    return {"target": text, "config": config, "status": status, "detail": detail}


def _split_of(key: str) -> str:
    """``class`` of ``half:class-5`` (for results written before configs named their split)."""
    parts = key.rsplit("-", 1)[0].split(":")
    return next((p for p in parts if p in ("class", "iid")), parts[-1])


def targets(results: Json) -> list[Json]:
    """The issue's targets, each met or missed, with the numbers behind the verdict."""
    out: list[Json] = []
    for key, config in results["configs"].items():
        methods, gaps = config["methods"], config.get("tmc_gaps", {})
        if "tmc" not in methods:
            continue
        tmc = methods["tmc"]["accuracy"]["mean"]

        def gap_text(m: str, gaps: Json = gaps) -> str:
            g = gaps[m]
            noise = " (inside noise)" if g["inside_noise"] else ""
            return f"TMC − {m} = {100 * g['gap']:+.1f} pt{noise}"

        split = config.get("scenario", {}).get("split") or _split_of(key)
        if split == "class":
            rivals = [m for m in ("ensemble_softmax", "ensemble_logit", "soup") if m in gaps]
            out.append(
                _target(
                    "TMC beats the ensemble and the soup on the class split",
                    key,
                    all(gaps[m]["gap"] > 0 for m in rivals),
                    "; ".join(gap_text(m) for m in rivals),
                    inside_noise=all(gaps[m]["gap"] > 0 or gaps[m]["inside_noise"] for m in rivals),
                )
            )
            if "forgetting" in config:
                out.append(
                    _target(
                        "forgetting a silo equals the federation without it (bit for bit)",
                        key,
                        config["forgetting"]["exact"],
                        f"exact in {len(config['seeds'])} of {len(config['seeds'])} seeds"
                        if config["forgetting"]["exact"]
                        else "not exact in some seed",
                    )
                )
        if split == "iid" and "paragon" in methods:
            error = methods["paragon"]["accuracy"]["mean"] - tmc
            out.append(
                _target(
                    "TMC within 3 points of the paragon on iid",
                    key,
                    error <= 0.03,
                    f"paragon − TMC = {100 * error:.1f} pt",
                )
            )
        if key in FEASIBILITY:
            floor = FEASIBILITY[key]
            test_size = results["configs"][key].get("test_size", 540)
            out.append(
                _target(
                    f"TMC at least the feasibility run's {100 * floor:.0f} %",
                    key,
                    tmc >= floor,
                    f"TMC {100 * tmc:.2f} %",
                    inside_noise=floor - tmc <= math.sqrt(tmc * (1 - tmc) / test_size),
                )
            )
        if "fedavg" in gaps:
            rounds = results["settings"]["rounds"]
            out.append(
                _target(
                    f"TMC (1 round) at least as accurate as FedAvg ({rounds} rounds)",
                    key,
                    gaps["fedavg"]["gap"] >= 0,
                    gap_text("fedavg"),
                    inside_noise=gaps["fedavg"]["inside_noise"],
                )
            )
        if "linearity_max_abs" in config:
            value = config["linearity_max_abs"]
            out.append(
                _target(
                    "linearity identity holds (float32)",
                    key,
                    value < 1e-4,
                    f"max |diff| {value:.1e}",
                )
            )
    check = results.get("simulate_check")
    if check:
        out.append(
            _target(
                "in-process TMC equals the real federation (server.federation.simulate)",
                check["config"],
                check["composed_identical"] and check["same_base"] and check["same_data"],
                f"components identical {sum(check['components_identical'])}/"
                f"{check['components']}, accuracy {check['simulate_accuracy']:.4f} "
                f"(simulate) vs {check['in_process_accuracy']:.4f} (in-process)",
            )
        )
    return out


def _table(results: Json, header: str, cell: object, methods: Sequence[str]) -> list[str]:
    lines = [header, "", "| config | " + " | ".join(LABELS[m] for m in methods) + " |"]
    lines.append("|---" * (len(methods) + 1) + "|")
    for key, config in results["configs"].items():
        row = [cell(config["methods"].get(m)) for m in methods]  # type: ignore[operator]
        lines.append(f"| {key} | " + " | ".join(row) + " |")
    return [*lines, ""]


def _grid_edges(results: Json) -> list[str]:
    """Which chosen rates sit at the lowest or highest value of the grid."""
    grid = results["settings"]["lrs"]
    if len(grid) < 3:  # with two rates every choice is at an edge: nothing to say
        return []
    low, high = min(grid), max(grid)
    found = []
    for key, config in results["configs"].items():
        for m, entry in config["methods"].items():
            hits = sorted({f"{lr:g}" for lr in entry["lr"] if lr in (low, high)})
            if hits:
                found.append(f"{key} {LABELS[m]} ({', '.join(hits)})")
    return found


def markdown(results: Json, plots: Sequence[str], *, tables_only: bool = False) -> str:
    """The report: settings, accuracy, error w.r.t. paragon, learning rates, task-IL,
    forgetting, linearity, TMC's gaps against noise, the simulate check and the targets."""
    s = results["settings"]
    present = [m for m in METHODS if any(m in c["methods"] for c in results["configs"].values())]
    no_paragon = [m for m in present if m != "paragon"]
    out = [
        f"# Accuracy ({s['mode']} mode)",
        "",
        f"{s['dataset']}; bases {', '.join(s['bases'])}; splits {', '.join(s['splits'])};"
        f" {'/'.join(str(n) for n in s['silos'])} silos; {s['seeds']} seeds; {s['epochs']} local"
        f" epochs for every method (FedAvg: {s['rounds']} rounds × {s['epochs'] // s['rounds']});"
        f" learning rate per method and seed chosen on validation from"
        f" {{{', '.join(f'{lr:g}' for lr in s['lrs'])}}}; κ = 15 (class) / 5 (iid, dirichlet);"
        " mean ± std over seeds, in %. Config `half:` = base pre-trained on classes 0-4 only.",
        "",
    ]
    out += _table(results, "## Test accuracy (%)", lambda e: _pct(e and e["accuracy"]), present)
    out += _table(
        results,
        "## Error w.r.t. paragon (points, paragon − method)",
        lambda e: _pct(e and e.get("error_wrt_paragon"), signed=True),
        no_paragon,
    )
    out += ["## Targets", ""]
    for t in results.get("targets", []):
        out.append(f"- **{t['status']}** — {t['target']} [{t['config']}]: {t['detail']}")
    out.append("")
    if tables_only:
        return "\n".join(out)
    out += _table(
        results,
        "## Chosen learning rates (per seed)",
        lambda e: "–" if e is None else ", ".join(f"{lr:g}" for lr in e["lr"]),
        present,
    )
    edges = _grid_edges(results)
    if edges:
        out += [
            "At an edge of the grid (a rate beyond it might have done better): " + "; ".join(edges),
            "",
        ]
    class_keys = [k for k, c in results["configs"].items() if "forgetting" in c]
    if class_keys:
        out += ["## Task-incremental accuracy, class split (%)", ""]
        out += ["| config | " + " | ".join(LABELS[m] for m in present) + " |"]
        out += ["|---" * (len(present) + 1) + "|"]
        for key in class_keys:
            methods = results["configs"][key]["methods"]
            cells = [
                _pct(methods[m].get("task_accuracy")) if m in methods else "–" for m in present
            ]
            out.append(f"| {key} | " + " | ".join(cells) + " |")
        out += ["", "## Forgetting silo-0 with TMC (class split, %)", ""]
        out += [
            "Forgetting drops the silo's component and renormalises α: the result is the "
            "federation without that silo. What θ0 itself knew about its classes stays (the "
            "`all` base was pre-trained on public samples of every class; the `half` base on "
            "classes 0-4).",
            "",
        ]
        out += ["| config | its classes before → after | other classes before → after | exact |"]
        out += ["|---|---|---|---|"]
        for key in class_keys:
            f = results["configs"][key]["forgetting"]
            out.append(
                f"| {key} | {_pct(f['forgotten_before'])} → {_pct(f['forgotten_after'])} | "
                f"{_pct(f['others_before'])} → {_pct(f['others_after'])} | "
                f"{'bit for bit' if f['exact'] else 'NO'} |"
            )
        out.append("")
    out += ["## TMC's gap to each method (points) and noise", ""]
    out += [
        "Inside noise (≈) when |gap| ≤ max(std of the per-seed gaps, binomial standard error "
        "√(p(1−p)/N) of the test set, one image); one digits test image = 0.19 pt.",
        "",
    ]
    rivals = [m for m in present if m != "tmc"]
    out += ["| config | " + " | ".join(LABELS[m] for m in rivals) + " | linearity max abs |"]
    out += ["|---" * (len(rivals) + 2) + "|"]
    for key, config in results["configs"].items():
        gaps = config.get("tmc_gaps", {})
        cells = [
            f"{100 * gaps[m]['gap']:+.1f} {'≈' if gaps[m]['inside_noise'] else ''}"
            if m in gaps
            else "–"
            for m in rivals
        ]
        lin = config.get("linearity_max_abs")
        out.append(
            f"| {key} | " + " | ".join(cells) + f" | {'–' if lin is None else f'{lin:.1e}'} |"
        )
    out.append("")
    check = results.get("simulate_check")
    if check:
        out += ["## In-process TMC vs the real federation (`server.federation.simulate`)", ""]
        out += [f"- `{k}`: {v}" for k, v in check.items()]
        out.append("")
    if results.get("skipped"):
        out += ["Skipped: " + "; ".join(results["skipped"]), ""]
    d = results.get("durations_s", {})
    machine = results.get("machine", {})
    load = results.get("load_average_1min", {})
    out += [
        f"Durations (s): {', '.join(f'{k} {v:.0f}' for k, v in d.items())}. Machine: "
        f"{machine.get('cpu_model', '?')}, {machine.get('usable_cores', '?')} cores, torch "
        f"threads {s['threads']}, device {s['device']}; 1-minute load average "
        f"{load.get('start', float('nan')):.1f} at the start, {load.get('end', float('nan')):.1f}"
        " at the end (other jobs shared the cores).",
        "",
    ]
    cached = results.get("from_cache", {})
    if cached.get("in_process") or cached.get("fedavg"):
        out += [
            f"Read from the cache (`--cache`): {cached['in_process']} of "
            f"{cached['in_process_of']} in-process runs and {cached['fedavg']} of "
            f"{cached['fedavg_of']} FedAvg runs, so the durations above are this process's, "
            f"not the computation's; the in-process runs took "
            f"{cached['in_process_computed_s']:.0f} s when they were computed.",
            "",
        ]
    out += [f"![{name}]({name})" for name in plots]
    return "\n".join(out) + "\n"


def write_plots(results: Json, folder: Path, stem: str) -> list[Path]:
    """Accuracy per method per configuration, and error w.r.t. paragon (the paper's figure)."""
    keys = list(results["configs"])

    def column(method: str, field: str, part: str) -> list[float]:
        values = []
        for key in keys:
            entry = results["configs"][key]["methods"].get(method, {}).get(field)
            values.append(100 * entry[part] if entry else math.nan)
        return values

    shown = [
        m for m in METHODS if m not in ("tmc_weighted", "tmc_int8", "tmc_dp", "paragon_tangent")
    ]
    shown = [m for m in shown if any(m in c["methods"] for c in results["configs"].values())]
    low = min(
        (v for m in shown for v in column(m, "accuracy", "mean") if not math.isnan(v)), default=0.0
    )
    accuracy = grouped_bars(
        folder / f"{stem}.png",
        keys,
        {LABELS[m]: column(m, "accuracy", "mean") for m in shown},
        errors={LABELS[m]: column(m, "accuracy", "std") for m in shown},
        ylabel="test accuracy (%)",
        title=f"Accuracy per method ({results['settings']['mode']} mode, mean ± std over seeds)",
        ylim=(max(0.0, low - 5.0), 104.0),
        annotate=True,
    )
    paper = [m for m in PAPER_ERROR_METHODS if m in shown]
    error = grouped_bars(
        folder / f"{stem}_error.png",
        keys,
        {LABELS[m]: column(m, "error_wrt_paragon", "mean") for m in paper},
        errors={LABELS[m]: column(m, "error_wrt_paragon", "std") for m in paper},
        ylabel="error w.r.t. paragon (points)",
        title="Error w.r.t. paragon (paragon − method; lower is better)",
        annotate=True,
    )
    return [accuracy, error]
