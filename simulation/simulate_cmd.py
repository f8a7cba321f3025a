"""``tmc simulate``: a real Flower federation on this machine (simulation engine)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from tmc.common.device import resolve_device
from tmc.common.errors import FederationError
from tmc.common.federation.config import FederationConfig
from tmc.server.cli.output import EXIT_USAGE, console, emit_json, err_console, handle_errors, table
from tmc.server.federation import (
    RoundSummary,
    StopRequest,
    check_continuation,
    recorded_increments,
)
from tmc.simulation.harness import simulate
from tmc.simulation.run_options import with_run_config_options

SIMULATED_ROUND_INTERVAL = 1.0
"""Seconds between a continual simulation's checks for new data (the run config's 60 s
suits silos on other machines)."""


@with_run_config_options(
    exclude={"registry"},
    defaults={
        "increments": "the registry's, or one per round for a new registry (0 too)",
        "min-silos": "every silo online (--supernodes, else --num-silos)",
        "round-interval": "1 s in a simulation (continual runs, --rounds 0)",
    },
)
def simulate_command(
    run_config: dict[str, Any],
    registry: Annotated[Path, typer.Option(help="registry folder (created, or continued)")],
    supernodes: Annotated[
        int, typer.Option(min=0, help="silos online (0: all); silo-i is node i")
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON document on stdout")
    ] = False,
) -> None:
    """Run R federated rounds with the simulation engine: round r asks every silo for its
    increment r, commits each component to the registry as it arrives, composes them and
    evaluates the composition. --rounds 0 runs continually: a round starts whenever a
    silo has an increment it has not contributed, until Ctrl-C/SIGTERM (which end it
    between commits) or --max-idle-rounds skipped rounds in a row. Rerun with the same
    registry to continue (new increments); nothing already trained is retrained, and a run
    whose data split, silos, base or classes differ from the registry's is refused, saying
    what differs. Every run-config key is an option; a key left out takes the run config's
    default. Exits 2 when a round committed nothing because every silo was refused."""
    with handle_errors(as_json=as_json):
        config = simulation_config(run_config, registry=registry, supernodes=supernodes)
        supernodes = supernodes or config.num_silos
        resolve_device(config.client_device)  # every simulated silo runs on this machine
        check_continuation(config, config.data_spec())
        out = err_console if as_json else console
        planned = f"{config.rounds} round(s)" if config.rounds else "continual rounds until stopped"
        out.print(
            f"simulating {supernodes} silos of {config.dataset} ({config.split} split), "
            f"{planned}, registry {config.registry_path}",
            highlight=False,
        )
        start = time.perf_counter()

        def progress(summary: RoundSummary) -> None:
            accuracy = "n/a" if summary.accuracy is None else f"{summary.accuracy:.4f}"
            out.print(
                f"round {summary.round}: +{len(summary.accepted)} components "
                f"({len(summary.rejected)} refused, {len(summary.idle)} idle), "
                f"{summary.components} in the model, accuracy {accuracy}, "
                f"{summary.upload_bytes / 1e6:.2f} MB uploaded, {summary.seconds:.1f} s",
                highlight=False,
            )

        stop = StopRequest()
        with stop.on_signals():
            summaries = simulate(config, num_supernodes=supernodes, on_round=progress, stop=stop)
        final = summaries[-1].accuracy if summaries else None
        # Idle silos (nothing new to learn) are normal; a round in which every silo that
        # answered was refused is not.
        failed = [s for s in summaries if s.rejected and not s.accepted and not s.idle]
        if as_json:
            emit_json(
                {
                    "rounds": [
                        {
                            "round": s.round,
                            "components": s.components,
                            "accuracy": s.accuracy,
                            "federated_accuracy": s.federated_accuracy,
                            "accepted": len(s.accepted),
                            "rejected": [r.model_dump() for r in s.rejected],
                            "seconds": s.seconds,
                        }
                        for s in summaries
                    ],
                    "final_accuracy": final,
                    "registry": str(config.registry_path),
                    "seconds": time.perf_counter() - start,
                    "error": _failure(failed) if failed else None,
                }
            )
            if failed:
                raise typer.Exit(EXIT_USAGE)
            return
        console.print(
            table(
                "Rounds",
                [
                    "round",
                    "new components",
                    "refused",
                    "components",
                    "accuracy",
                    "federated",
                    "seconds",
                ],
                [
                    [
                        s.round,
                        len(s.accepted),
                        len(s.rejected),
                        s.components,
                        s.accuracy,
                        s.federated_accuracy,
                        round(s.seconds, 1),
                    ]
                    for s in summaries
                ],
            )
        )
        console.print(
            f"done in {time.perf_counter() - start:.1f} s; registry {config.registry_path}"
        )
        if failed:
            raise FederationError(_failure(failed))


def _failure(failed: list[RoundSummary]) -> str:
    """Why rounds committed nothing: every silo's refusal, once per silo and reason."""
    reasons = sorted({f"{r.silo}: {r.reason}" for s in failed for r in s.rejected})
    rounds = ", ".join(str(s.round) for s in failed)
    return f"round(s) {rounds} committed nothing: every silo was refused ({'; '.join(reasons)})"


def simulation_config(
    run_config: Mapping[str, Any], *, registry: Path, supernodes: int
) -> FederationConfig:
    """The run config of ``tmc simulate``: the keys given, and three it derives when they
    are not: increments (the registry's, or one per round; 2 for a continual run),
    min-silos (every silo online) and round-interval (1 s: simulated silos are local)."""
    given = {**run_config, "registry": str(registry)}
    given.setdefault("round-interval", SIMULATED_ROUND_INTERVAL)
    if not given.get("increments"):  # --increments 0 has long meant "derive it"
        given.pop("increments", None)
        rounds = FederationConfig.from_run_config(given).rounds
        given["increments"] = recorded_increments_of(registry) or rounds or 2
    config = FederationConfig.from_run_config(given)
    given.setdefault("min-silos", supernodes or config.num_silos)
    return FederationConfig.from_run_config(given)


def recorded_increments_of(registry: Path) -> int | None:
    """The increments per silo a registry's silos were cut into (None for a new one)."""
    return recorded_increments(FederationConfig.from_run_config({"registry": str(registry)}))
