"""Plotting helpers shared by the benchmarks (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def grouped_bars(
    path: Path,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    errors: Mapping[str, Sequence[float]] | None = None,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
    annotate: bool = False,
) -> Path:
    """One cluster of bars per group, one bar per series (value ± error), saved as PNG.

    ``series[name][i]`` is the value of ``name`` in ``groups[i]``; NaN leaves a gap."""
    count = max(len(series), 1)
    width = 0.8 / count
    fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + len(groups) * (0.5 + 0.25 * count)), 4.2))
    for index, (name, values) in enumerate(series.items()):
        positions = [g + (index - (count - 1) / 2) * width for g in range(len(groups))]
        err = errors.get(name) if errors else None
        bars = ax.bar(positions, values, width, yerr=err, capsize=2, label=name)
        if annotate:
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=2, rotation=90)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
