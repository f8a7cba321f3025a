"""Learning-rate selection, aggregation over seeds and the target verdicts, on made-up
outputs (no training)."""

from __future__ import annotations

import pytest
import torch

from bench.accuracy_methods import LrRun, Outputs
from bench.accuracy_report import _split_of, json_summary, markdown, targets
from bench.accuracy_select import aggregate, choose_lr, stat


def _logits(correct: list[bool], labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    logits = torch.zeros(len(labels), 3)
    for i, (ok, label) in enumerate(zip(correct, labels.tolist(), strict=True)):
        logits[i, label if ok else (label + 1) % 3] = margin
    return logits


def _run(lr: float, correct: list[bool], labels: torch.Tensor, margin: float = 1.0) -> LrRun:
    out = _logits(correct, labels, margin)
    return LrRun(lr=lr, outputs={"tmc": Outputs(validation=out, test=out)})


def test_best_validation_accuracy_wins_and_ties_go_to_the_lower_loss() -> None:
    labels = torch.tensor([0, 1, 2, 0])
    runs = {
        1e-4: _run(1e-4, [True, True, False, False], labels),
        1e-3: _run(1e-3, [True, True, True, False], labels),
    }
    assert choose_lr(runs, "tmc", labels) == 1e-3
    tied = {
        1e-4: _run(1e-4, [True] * 4, labels, margin=1.0),
        1e-3: _run(1e-3, [True] * 4, labels, margin=5.0),  # more confident: lower loss
    }
    assert choose_lr(tied, "tmc", labels) == 1e-3


def test_stat_and_aggregate() -> None:
    assert stat([0.5]) == {"mean": 0.5, "std": 0.0, "values": [0.5]}
    assert stat([0.4, 0.6])["std"] == pytest.approx(0.1414, abs=1e-4)

    def seed(seed: int, tmc: float, ensemble: float, paragon: float) -> dict[str, object]:
        entry = {"lr": 1e-3, "validation": {"0.001": 1.0}, "task_accuracy": None}
        return {
            "seed": seed,
            "methods": {
                "tmc": {**entry, "accuracy": tmc},
                "ensemble_softmax": {**entry, "accuracy": ensemble},
                "paragon": {**entry, "accuracy": paragon},
            },
            "linearity_max_abs": 1e-6 * (seed + 1),
        }

    out = aggregate([seed(0, 0.90, 0.80, 0.99), seed(1, 0.92, 0.82, 0.99)], test_size=540)
    tmc = out["methods"]["tmc"]
    assert tmc["accuracy"]["mean"] == pytest.approx(0.91)
    assert tmc["error_wrt_paragon"]["mean"] == pytest.approx(0.08)
    assert "task_accuracy" not in tmc
    gap = out["tmc_gaps"]["ensemble_softmax"]
    assert gap["gap"] == pytest.approx(0.10)
    assert gap["inside_noise"] is False
    assert out["tmc_gaps"]["paragon"]["inside_noise"] is False
    assert out["linearity_max_abs"] == pytest.approx(2e-6)
    close = aggregate([seed(0, 0.900, 0.899, 0.99), seed(1, 0.90, 0.90, 0.99)], test_size=540)
    assert close["tmc_gaps"]["ensemble_softmax"]["inside_noise"] is True


def test_target_verdicts_and_reports() -> None:
    def config(tmc: float, ensemble: float, inside: bool) -> dict[str, object]:
        acc = {"mean": tmc, "std": 0.0, "values": [tmc]}
        return {
            "seeds": [0],
            "methods": {
                "tmc": {"accuracy": acc, "lr": [1e-3]},
                "ensemble_softmax": {
                    "accuracy": {"mean": ensemble, "std": 0.0, "values": [ensemble]},
                    "lr": [3e-4],
                },
                "paragon": {"accuracy": {"mean": 0.99, "std": 0.0, "values": [0.99]}, "lr": [1e-3]},
            },
            "tmc_gaps": {
                "ensemble_softmax": {"gap": tmc - ensemble, "noise": 0.01, "inside_noise": inside},
                "paragon": {"gap": tmc - 0.99, "noise": 0.01, "inside_noise": False},
            },
        }

    results = {
        "mode": "quick",
        "settings": {
            "mode": "quick",
            "rounds": 5,
            "dataset": "digits",
            "bases": ["all", "half"],
            "splits": ["class", "iid"],
            "silos": [5],
            "seeds": 1,
            "epochs": 10,
            "lrs": [3e-4, 1e-3],
            "threads": 1,
            "device": "cpu",
        },
        "configs": {
            "class-5": config(0.97, 0.96, False),
            "half:class-5": config(0.80, 0.81, True),
            "iid-5": config(0.95, 0.95, True),
        },
    }
    verdicts = {(t["config"], t["target"].split()[1]): t["status"] for t in targets(results)}
    assert verdicts[("class-5", "beats")] == "met"
    assert verdicts[("half:class-5", "beats")] == "missed (inside noise)"
    assert verdicts[("iid-5", "within")] == "missed"  # 4 points behind the paragon
    assert _split_of("half:class-5") == "class"
    assert _split_of("dirichlet:0.5-5") == "0.5"
    assert json_summary(results)["class-5"] == {"tmc": 0.97, "ensemble": 0.96, "paragon": 0.99}
    results["targets"] = targets(results)
    text = markdown(results, ["a.png"])
    assert "| half:class-5 | 80.0 ± 0.0 |" in text
    assert "![a.png](a.png)" in text
