"""``tmc demo``: the whole story on the built-in default, in a few minutes on a CPU.

Five silos hold disjoint classes of scikit-learn's ``digits``, arriving in two increments.
A real Flower federation (simulation engine) runs two rounds: each silo trains a tangent
component on each increment, the server commits them to an on-disk registry and composes
them. Then one silo asks to be forgotten: its components are removed exactly, its classes'
accuracy falls, the others' stays, the silo is tombstoned (later rounds refuse it), and the
registry verifies bit for bit.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from tmc.common.components import compose as compose_components
from tmc.common.data import load_dataset
from tmc.common.errors import ConfigError
from tmc.common.federation.config import FederationConfig
from tmc.common.training import Evaluation, evaluate
from tmc.server.cli.output import console, emit_json, err_console, handle_errors, table
from tmc.server.cli.plots import plot_history
from tmc.server.composed import ComposedModel
from tmc.server.federation import RoundSummary, read_history
from tmc.server.registry import Registry
from tmc.simulation.harness import simulate
from tmc.simulation.run_options import with_run_config_options


def demo_config(run_config: Mapping[str, Any], *, registry: Path) -> FederationConfig:
    """The demo's federation: the keys given on the command line, a class split with one
    increment per round, and every silo in every round."""
    given = FederationConfig.from_run_config(run_config)
    for key, value, (low, high) in (
        ("num-silos", given.num_silos, DEMO_SILOS),
        ("rounds", given.rounds, DEMO_ROUNDS),
    ):
        if not low <= value <= high:
            raise ConfigError(f"the demo runs with {key} from {low} to {high}, not {value}")
    return FederationConfig.from_run_config(
        {
            **run_config,
            "registry": str(registry),
            "split": "class",
            "increments": given.rounds,
            "min-silos": given.num_silos,
        }
    )


def _mean(per_class: dict[int, float], classes: set[int], *, inside: bool) -> float:
    values = [v for c, v in per_class.items() if (c in classes) == inside]
    return sum(values) / len(values) if values else float("nan")


DEMO_SILOS = (2, 10)
"""Forgetting needs a silo to forget and others to keep; digits has ten classes to cut."""
DEMO_ROUNDS = (1, 5)
"""Each round brings one increment; more would not fit the demo's few minutes."""


@with_run_config_options(
    ("num-silos", "rounds", "epochs", "seed"),
    helps={
        "num-silos": f"silos, {DEMO_SILOS[0]} to {DEMO_SILOS[1]} (class split)",
        "rounds": f"rounds = data increments, {DEMO_ROUNDS[0]} to {DEMO_ROUNDS[1]}",
    },
)
def demo(
    run_config: dict[str, Any],
    registry: Annotated[Path, typer.Option(help="registry folder (replaced)")] = Path(
        "demo-registry"
    ),
    forget_silo: Annotated[
        str, typer.Option("--forget", help="silo that asks to be forgotten")
    ] = "silo-2",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Federate, compose, forget, verify: the project on the built-in digits data."""
    with handle_errors(as_json=as_json):
        out = err_console if as_json else console
        start = time.perf_counter()
        config = demo_config(run_config, registry=registry)
        if (registry / "registry.db").exists():
            shutil.rmtree(registry)  # the demo's own registry from an earlier run
        out.rule(
            "1. Federation: Flower simulation engine, one tangent component per silo and increment"
        )

        def progress(summary: RoundSummary) -> None:
            out.print(
                f"round {summary.round}: {len(summary.accepted)} components committed "
                f"({', '.join(summary.accepted_silos)}); model = {summary.components} components; "
                f"accuracy {summary.accuracy:.4f}; {summary.seconds:.1f} s",
                highlight=False,
            )

        summaries = simulate(config, on_round=progress)
        test_set = load_dataset(config.dataset_spec(), train=False)
        with Registry.open(registry, actor="demo") as opened:
            records = opened.list_components()
            classes = {r.silo: set(r.classes) for r in records}
            gone = classes.get(forget_silo)
            if gone is None:
                raise typer.BadParameter(f"no silo {forget_silo!r}; silos: {sorted(classes)}")
            composed = ComposedModel.from_registry(opened)
            base_scores = evaluate(composed.base.network, test_set)
            before = evaluate(composed.model, test_set)
            without = opened.compose(exclude_silos=[forget_silo])
            out.rule(f"2. Forgetting {forget_silo} (classes {sorted(gone)}) on its request")
            result = opened.forget(silo=forget_silo, actor="demo", reason="the silo asked")
            remaining = [opened.get_component(r.id) for r in opened.list_components()]
            exact = opened.composed_delta().equal(compose_components(remaining)) and (
                opened.composed_delta().equal(without)
            )
            after = evaluate(ComposedModel.from_registry(opened).model, test_set)
            tombstone = opened.tombstone(forget_silo)
            refusal = tombstone.refusal() if tombstone is not None else "not tombstoned"
            out.rule("3. Verification: blobs match their hashes, the model equals a recomposition")
            report = opened.verify(actor="demo")
        plot = registry / "accuracy_per_round.png"
        plot_history(read_history(registry), plot)

        def row(name: str, scores: Evaluation) -> list[object]:
            return [
                name,
                scores.accuracy,
                _mean(scores.per_class, gone, inside=True),
                _mean(scores.per_class, gone, inside=False),
            ]

        seconds = time.perf_counter() - start
        summary = {
            "rounds": [
                {"round": s.round, "components": s.components, "accuracy": s.accuracy}
                for s in summaries
            ],
            "base_accuracy": base_scores.accuracy,
            "composed_accuracy": before.accuracy,
            "forgotten": {
                "silo": forget_silo,
                "classes": sorted(gone),
                "removed_components": len(result.removed),
                "its_classes_before": _mean(before.per_class, gone, inside=True),
                "its_classes_after": _mean(after.per_class, gone, inside=True),
                "other_classes_before": _mean(before.per_class, gone, inside=False),
                "other_classes_after": _mean(after.per_class, gone, inside=False),
                "exact": exact,
                "later_contributions": refusal,
            },
            "accuracy_after_forgetting": after.accuracy,
            "verify_ok": report.ok,
            "registry": str(registry),
            "plot": str(plot),
            "seconds": seconds,
        }
        if as_json:
            emit_json(summary)
            return
        console.print(
            table(
                "Rounds",
                ["round", "components", "accuracy (540 test images)"],
                [[s.round, s.components, s.accuracy] for s in summaries],
            )
        )
        console.print(
            table(
                f"Before and after forgetting {forget_silo}",
                ["model", "accuracy", f"classes {sorted(gone)}", "other classes"],
                [
                    row("base θ0 (pre-trained on the public split)", base_scores),
                    row(f"composed, {len(records)} components", before),
                    row(f"after forgetting {forget_silo}", after),
                ],
            )
        )
        console.print(
            f"forgetting removed {len(result.removed)} components and is exact "
            f"(bit-identical to composing the others from scratch): {exact}\n"
            f"{forget_silo} stays out: later rounds refuse it ({refusal}) until "
            f"`tmc silo readmit {forget_silo}`\n"
            f"registry verify: {'ok' if report.ok else report.problems}\n"
            f"accuracy per round: {plot}\n"
            f"explore: tmc registry list --registry {registry}; "
            f"tmc registry audit --registry {registry}\n"
            f"done in {seconds:.0f} s"
        )
