"""Plots a person would rather look at than a table (matplotlib, written as PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt

from tmc.server.federation import RoundSummary


def plot_history(rounds: Sequence[RoundSummary], path: Path) -> None:
    """Accuracy of the composed model and number of components, per round."""
    figure, accuracy_axis = plt.subplots(figsize=(6.4, 4.0), dpi=120)
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
    accuracy_axis.set_xlabel("round")
    accuracy_axis.set_ylabel("top-1 accuracy")
    accuracy_axis.grid(alpha=0.3)
    components_axis = accuracy_axis.twinx()
    components_axis.bar(numbers, [r.components for r in rounds], alpha=0.15, color="grey")
    components_axis.set_ylabel("components in the model")
    accuracy_axis.legend(loc="lower right")
    accuracy_axis.set_title("Tangent Model Composition: accuracy per round")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
