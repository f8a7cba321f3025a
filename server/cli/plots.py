"""Plots a person would rather look at than a table (matplotlib, rendered as PNG)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tmc.server.federation import RoundSummary


def history_png(rounds: Sequence[RoundSummary]) -> bytes:
    """Accuracy of the composed model and number of components, per round, as PNG bytes.

    Built on a bare ``Figure`` rather than pyplot: no global figure state, so the
    dashboard's worker threads may render at the same time, and no display is needed.
    """
    figure = Figure(figsize=(6.4, 4.0), dpi=120)
    accuracy_axis = figure.subplots()
    numbers = [r.round for r in rounds]
    accuracy_axis.plot(
        numbers,
        [float("nan") if r.accuracy is None else r.accuracy for r in rounds],
        marker="o",
        label="composed model (server test set)",
    )
    if any(r.federated_accuracy is not None for r in rounds):
        accuracy_axis.plot(
            numbers,
            [
                float("nan") if r.federated_accuracy is None else r.federated_accuracy
                for r in rounds
            ],
            marker="s",
            linestyle="--",
            label="silos' local test data (weighted)",
        )
    accuracy_axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole
    accuracy_axis.set_xlabel("round")
    accuracy_axis.set_ylabel("top-1 accuracy")
    accuracy_axis.grid(alpha=0.3)
    components_axis = accuracy_axis.twinx()
    components_axis.bar(numbers, [r.components for r in rounds], alpha=0.15, color="grey")
    components_axis.set_ylabel("components in the model")
    accuracy_axis.legend(loc="lower right")
    accuracy_axis.set_title("Tangent Model Composition: accuracy per round")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_history(rounds: Sequence[RoundSummary], path: Path) -> None:
    """Write :func:`history_png` to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(history_png(rounds))
