"""``tmc demo``: the whole story on the built-in default, in a couple of minutes on a CPU.

Five silos hold disjoint classes of scikit-learn's ``digits``; each trains a tangent
component of the built-in base on its own data; the server composes them; then one silo
asks to be forgotten and its component is removed exactly.
"""

from __future__ import annotations

import time

import typer

from common.components import Component, ComponentMeta, ExactSum, compose
from common.data import DatasetSpec, FederatedPartition, PartitionSpec, fingerprint
from common.models import BaseModelSpec, materialize
from common.tangent import TangentModel
from common.training import digits_preset, evaluate, train_tangent
from server.cli.output import console, emit_json, handle_errors, table


def demo(
    silos: int = typer.Option(5, min=2, max=10, help="number of data silos (class split)"),
    forget: int = typer.Option(2, min=0, help="index of the silo that asks to be forgotten"),
    epochs: int = typer.Option(30, min=1, help="local epochs per component"),
    seed: int = typer.Option(0, help="seed of the split, the base and the training"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Train one tangent component per silo, compose them, then forget one silo exactly."""
    with handle_errors(as_json=as_json):
        start = time.perf_counter()
        base = materialize(BaseModelSpec.builtin_digits(seed=seed), progress=not as_json)
        partition = FederatedPartition(
            DatasetSpec(name="digits"),
            PartitionSpec(split="class", num_silos=silos, seed=seed),
        )
        test_set = partition.test_dataset()
        model = TangentModel(base.network, base.tangent_names)
        base_eval = evaluate(model, test_set)
        components: list[Component] = []
        rows = []
        for index, name in enumerate(partition.silo_names()):
            shard = partition.silo_shard(index)
            delta, report = train_tangent(
                model, shard, digits_preset(seed=seed), progress=not as_json, description=name
            )
            component = Component(
                delta,
                ComponentMeta(
                    base_sha256=base.sha256,
                    silo=name,
                    num_examples=report.num_examples,
                    classes=tuple(report.label_histogram),
                    metrics={"loss": report.final_loss, "seconds": report.seconds},
                    data_fingerprint=fingerprint(shard),
                ),
            )
            components.append(component)
            alone = evaluate(model, test_set, device="cpu").accuracy
            rows.append([name, list(component.meta.classes), report.num_examples, alone])
        tasks = [c.meta.classes for c in components]
        composed = evaluate(model_with(model, compose(components)), test_set, tasks=tasks)

        forgotten = components[forget % silos]
        running = ExactSum.of(components)
        running.remove(forgotten.delta)
        after_delta = running.mean()
        rest = [c for c in components if c is not forgotten]
        exact = after_delta.equal(compose(rest))
        after = evaluate(model_with(model, after_delta), test_set)
        gone = set(forgotten.meta.classes)

        def mean_of(per_class: dict[int, float], keep: bool) -> float:
            values = [v for c, v in per_class.items() if (c in gone) != keep]
            return sum(values) / len(values)

        gone_before, gone_after = (
            mean_of(composed.per_class, False),
            mean_of(after.per_class, False),
        )
        kept_before, kept_after = mean_of(composed.per_class, True), mean_of(after.per_class, True)
        seconds = time.perf_counter() - start
        summary = {
            "base_accuracy": base_eval.accuracy,
            "silos": [
                {"silo": r[0], "classes": r[1], "num_examples": r[2], "accuracy_alone": r[3]}
                for r in rows
            ],
            "composed_accuracy": composed.accuracy,
            "composed_task_accuracy": composed.task_accuracy,
            "forgotten_silo": forgotten.meta.silo,
            "forgotten_classes_accuracy": {"before": gone_before, "after": gone_after},
            "other_classes_accuracy": {"before": kept_before, "after": kept_after},
            "forgetting_is_exact": exact,
            "seconds": seconds,
        }
        if as_json:
            emit_json(summary)
            return
        console.print(
            table(
                "Components (one per silo)", ["silo", "classes", "examples", "accuracy alone"], rows
            )
        )
        console.print(
            table(
                "Composition and forgetting (digits test set, 540 images)",
                ["model", "accuracy", f"classes of {forgotten.meta.silo}", "other classes"],
                [
                    [
                        "base θ0",
                        base_eval.accuracy,
                        mean_of(base_eval.per_class, False),
                        mean_of(base_eval.per_class, True),
                    ],
                    [
                        f"composed ({silos} components)",
                        composed.accuracy,
                        gone_before,
                        kept_before,
                    ],
                    [
                        f"after forgetting {forgotten.meta.silo}",
                        after.accuracy,
                        gone_after,
                        kept_after,
                    ],
                ],
            )
        )
        console.print(
            f"task-incremental accuracy of the composition: {composed.task_accuracy:.4f}\n"
            f"forgetting is exact (bit-identical to composing the other {silos - 1}): {exact}\n"
            f"done in {seconds:.1f} s"
        )


def model_with(model: TangentModel, delta: object) -> TangentModel:
    model.load_delta(delta)  # type: ignore[arg-type]
    return model
