"""An unlearning audit anyone can rerun: membership inference on a forgotten silo's data.

A federation of n silos on a class split trains; silo 0 then asks to be forgotten. A
membership-inference attack (Shokri et al. 2017; the loss and confidence thresholds of Yeom
et al. 2018) tries to tell the forgotten silo's training examples (members) from held-out
examples of the same classes (non-members) from the model's outputs alone. Its AUC is
reported against four models:

(a) TMC before the forget (the silo's component in the sum);
(b) TMC after the forget (the registry's exact removal: drop Δ₀, renormalise);
(c) TMC trained without the silo from the start;
(d) FedAvg, R rounds, with the silo's last update subtracted (the last round re-averaged
    without it): the usual approximate removal, which leaves earlier rounds' influence.

Expected: (b) equals (c) bit for bit (every component is trained independently from θ0), and
its AUC sits where data never seen sits, about 0.5.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import Subset

from bench.accuracy_methods import silo_components, train_config
from bench.accuracy_setup import Prepared, Scenario, prepare
from bench.machine import describe_machine
from tmc.common.components import compose
from tmc.common.data import LabeledDataset
from tmc.common.tangent import TangentModel
from tmc.common.training import finetune, predict_logits

RESULTS = Path(__file__).resolve().parent / "results"
FORGOTTEN = 0  # the silo that asks to be forgotten


@dataclass(frozen=True)
class Attack:
    loss_auc: float
    confidence_auc: float
    accuracy_forgotten_classes: float


def _scores(model: nn.Module, dataset: LabeledDataset) -> tuple[np.ndarray, np.ndarray, float]:
    logits, labels = predict_logits(model, dataset)
    log_probs = torch.log_softmax(logits.double(), dim=1)
    loss = -log_probs[torch.arange(len(labels)), labels]
    confidence = log_probs.exp().max(dim=1).values
    accuracy = float((logits.argmax(dim=1) == labels).float().mean())
    return loss.numpy(), confidence.numpy(), accuracy


def attack(model: nn.Module, members: LabeledDataset, others: LabeledDataset) -> Attack:
    """AUC of telling members from non-members: lower loss, higher confidence = member."""
    member_loss, member_conf, member_acc = _scores(model, members)
    other_loss, other_conf, other_acc = _scores(model, others)
    truth = np.r_[np.ones(len(member_loss)), np.zeros(len(other_loss))]
    accuracy = (member_acc * len(member_loss) + other_acc * len(other_loss)) / len(truth)
    return Attack(
        loss_auc=float(roc_auc_score(truth, -np.r_[member_loss, other_loss])),
        confidence_auc=float(roc_auc_score(truth, np.r_[member_conf, other_conf])),
        accuracy_forgotten_classes=accuracy,
    )


def _non_members(prepared: Prepared, classes: Sequence[int]) -> LabeledDataset:
    targets = np.asarray(prepared.test.targets)
    keep = np.flatnonzero(np.isin(targets, list(classes)))
    return Subset(prepared.test, keep.tolist())  # type: ignore[return-value]


def _average(models: Sequence[nn.Module], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Σ wₖ θₖ / Σ wₖ over the models' state (float64 sums; integer buffers kept)."""
    total = sum(weights)
    states = [m.state_dict() for m in models]
    averaged: dict[str, torch.Tensor] = {}
    for name, first in states[0].items():
        if not first.is_floating_point():
            averaged[name] = first.clone()  # counters such as num_batches_tracked
            continue
        summed = torch.zeros_like(first, dtype=torch.float64)
        for weight, state in zip(weights, states, strict=True):
            summed += weight * state[name].double()
        averaged[name] = (summed / total).to(first.dtype)
    return averaged


def fedavg_with_removal(
    prepared: Prepared, *, rounds: int, epochs: int, lr: float
) -> tuple[nn.Module, nn.Module]:
    """FedAvg (weights by example count) and the same model with silo 0's last update taken
    out of the last aggregate."""
    names = prepared.base.tangent_names
    config = train_config(prepared, lr=lr, epochs=epochs, device="cpu")
    weights = [float(len(part)) for part in prepared.train_parts]
    global_model = copy.deepcopy(prepared.base.network)
    locals_: list[nn.Module] = []
    for _ in range(rounds):
        locals_ = [finetune(global_model, names, part, config)[0] for part in prepared.train_parts]
        global_model.load_state_dict(_average(locals_, weights))
    removed = copy.deepcopy(global_model)
    keep = [k for k in range(len(locals_)) if k != FORGOTTEN]
    removed.load_state_dict(_average([locals_[k] for k in keep], [weights[k] for k in keep]))
    return global_model, removed


def run_seed(scenario: Scenario, *, epochs: int, lr: float, fedavg_rounds: int) -> dict[str, Any]:
    prepared = prepare(scenario)
    config = train_config(prepared, lr=lr, epochs=epochs, device="cpu")
    model = TangentModel(prepared.base.network, prepared.base.tangent_names).eval()
    components = silo_components(model, prepared, prepared.train_parts, config)
    others = [c for k, c in enumerate(components) if k != FORGOTTEN]
    # (c): a federation that never had silo 0 trains the same independent components again.
    fresh = silo_components(
        model, prepared, [p for k, p in enumerate(prepared.train_parts) if k != FORGOTTEN], config
    )
    before, after, never = compose(components), compose(others), compose(fresh)
    identical = all(torch.equal(after[n], never[n]) for n in after)
    members = prepared.train_parts[FORGOTTEN]
    classes = prepared.tasks[FORGOTTEN]
    non_members = _non_members(prepared, classes)
    rows: dict[str, Attack] = {}
    for name, delta in (("before", before), ("after", after), ("never", never)):
        model.load_delta(dict(delta))
        rows[name] = attack(model, members, non_members)
    per_epoch = max(1, epochs // fedavg_rounds)
    fedavg, subtracted = fedavg_with_removal(
        prepared, rounds=fedavg_rounds, epochs=per_epoch, lr=lr
    )
    rows["fedavg"] = attack(fedavg, members, non_members)
    rows["fedavg_subtracted"] = attack(subtracted, members, non_members)
    return {
        "seed": scenario.seed,
        "forgotten_classes": list(classes),
        "members": len(members),
        "non_members": len(non_members),
        "after_equals_never": identical,
        "rows": {k: vars(v) for k, v in rows.items()},
    }


LABELS = {
    "before": "(a) TMC before the forget",
    "after": "(b) TMC after the forget",
    "never": "(c) TMC trained without the silo",
    "fedavg": "FedAvg (silo included)",
    "fedavg_subtracted": "(d) FedAvg, last update subtracted",
}


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"# Unlearning audit: membership inference on a forgotten silo ({results['name']})"]
    lines += [
        "",
        f"`{results['command']}`: {results['silos']} silos, class split, silo 0 forgotten; "
        f"{results['epochs']} local epochs (FedAvg: {results['fedavg_rounds']} rounds × "
        f"{results['fedavg_epochs']} epochs), lr {results['lr']}; seeds "
        f"{', '.join(str(s['seed']) for s in results['seeds'])}. Members: the forgotten "
        "silo's training examples; non-members: test examples of the same classes. AUC 0.5 = "
        "the attack cannot tell them apart. Mean ± std over seeds.",
        "",
        "| model | loss AUC | confidence AUC | accuracy on the silo's classes |",
        "|---|---:|---:|---:|",
    ]
    for key, label in LABELS.items():
        cells = []
        for field in ("loss_auc", "confidence_auc", "accuracy_forgotten_classes"):
            values = [s["rows"][key][field] for s in results["seeds"]]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    same = all(s["after_equals_never"] for s in results["seeds"])
    lines += [
        "",
        f"(b) equals (c) bit for bit in every seed: **{'yes' if same else 'NO'}**.",
        "",
        f"Machine: {results['machine']['cpu_model']}, {results['machine']['usable_cores']} "
        "usable cores.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.unlearning", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--base", choices=["all", "half", "lite0"], default="all")
    parser.add_argument("--silos", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fedavg-rounds", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # deterministic θ0 and training whatever the core count
    dataset = "mnist5k" if args.base == "lite0" else "digits"
    seeds = [
        run_seed(
            Scenario(
                split="class", num_silos=args.silos, seed=seed, base=args.base, dataset=dataset
            ),
            epochs=args.epochs,
            lr=args.lr,
            fedavg_rounds=args.fedavg_rounds,
        )
        for seed in (int(s) for s in args.seeds.split(","))
    ]
    name = dataset if args.base == "all" else f"{dataset}-{args.base}"
    results = {
        "name": name,
        "command": " ".join(
            ["python -m bench.unlearning", *(sys.argv[1:] if argv is None else argv)]
        ),
        "silos": args.silos,
        "epochs": args.epochs,
        "fedavg_rounds": args.fedavg_rounds,
        "fedavg_epochs": max(1, args.epochs // args.fedavg_rounds),
        "lr": args.lr,
        "machine": describe_machine("cpu"),
        "seeds": seeds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"unlearning_{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"unlearning_{name}.md").write_text(_markdown(results))
    print(_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
