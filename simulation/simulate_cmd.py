"""``tmc simulate``: a real Flower federation on this machine (simulation engine)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tmc.common.components import Encoding
from tmc.common.data.spec import DatasetName
from tmc.common.device import resolve_device
from tmc.common.errors import FederationError
from tmc.common.federation.config import FederationConfig
from tmc.common.models.spec import ArchitectureName
from tmc.common.training.config import LossName
from tmc.server.cli.output import EXIT_USAGE, console, emit_json, err_console, handle_errors, table
from tmc.server.federation import (
    RoundSummary,
    StopRequest,
    check_continuation,
    recorded_increments,
)
from tmc.simulation.harness import simulate


def simulate_command(
    registry: Annotated[Path, typer.Option(help="registry folder (created, or continued)")],
    dataset: Annotated[
        DatasetName, typer.Option(help="digits | cifar10 | cifar100 | imagefolder")
    ] = "digits",
    dataset_root: Annotated[str, typer.Option(help="folder of the cifar/imagefolder files")] = "",
    silos: Annotated[int, typer.Option(min=1, help="number of silos the data is cut into")] = 5,
    split: Annotated[str, typer.Option(help="class | iid | dirichlet:BETA")] = "class",
    rounds: Annotated[
        int,
        typer.Option(
            min=0,
            help="rounds in this run (numbering continues); 0: continual, until stopped "
            "(Ctrl-C, SIGTERM) or --max-idle-rounds",
        ),
    ] = 2,
    round_interval: Annotated[
        float, typer.Option(min=0.0, help="--rounds 0: seconds between checks for new data")
    ] = 1.0,
    max_idle_rounds: Annotated[
        int,
        typer.Option(
            min=0,
            help="--rounds 0: stop after this many skipped rounds in a row (no silo had a "
            "new increment); 0: never",
        ),
    ] = 0,
    increments: Annotated[
        int,
        typer.Option(
            min=0,
            help="data increments per silo (0: the registry's, or as many as rounds (2 with "
            "--rounds 0) for a new one); increment i arrives in round i+1",
        ),
    ] = 0,
    supernodes: Annotated[
        int, typer.Option(min=0, help="silos online (0: all); silo-i is node i")
    ] = 0,
    model: Annotated[ArchitectureName, typer.Option(help="base architecture")] = "small-cnn",
    base_weights: Annotated[
        str, typer.Option(help="pretrained | init | file:PATH | hub:NAME")
    ] = "pretrained",
    tangent: Annotated[str, typer.Option(help="full | last-stage | all | MODULE,...")] = "full",
    epochs: Annotated[int, typer.Option(min=1, help="local epochs per component")] = 30,
    lr: Annotated[float, typer.Option(help="AdamW learning rate")] = 1e-3,
    loss: Annotated[LossName, typer.Option(help="square (rescaled, κ) | ce")] = "square",
    kappa: Annotated[
        float, typer.Option(help="target scale of the square loss (15 class, 5 iid)")
    ] = 15.0,
    weighting: Annotated[str, typer.Option(help="uniform (αᵢ = 1/n) | num-examples")] = "uniform",
    seed: Annotated[
        int, typer.Option(min=0, help="seed of the split, the base and the training")
    ] = 0,
    client_device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    upload_dtype: Annotated[
        Encoding, typer.Option(help="how silos upload Δ: float32 | bfloat16 | int8 | int8-channel")
    ] = "float32",
    dp_epsilon: Annotated[
        float,
        typer.Option(min=0.0, help="DP-SGD per silo: target ε of each component (0: no DP)"),
    ] = 0.0,
    dp_delta: Annotated[float, typer.Option(help="δ of the (ε, δ) guarantee")] = 1e-5,
    dp_clip: Annotated[float, typer.Option(help="DP-SGD per-example gradient norm bound")] = 1.0,
    dp_noise_multiplier: Annotated[
        float, typer.Option(min=0.0, help="DP-SGD noise multiplier σ (0: calibrated to ε)")
    ] = 0.0,
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
    whose data split, silos, base or classes differ from the registry's is refused,
    saying what differs. Exits 2 when a round committed nothing because every silo was
    refused."""
    with handle_errors(as_json=as_json):
        if increments == 0:
            increments = recorded_increments_of(registry) or rounds or 2
        config = FederationConfig.from_run_config(
            {
                "registry": str(registry),
                "dataset": dataset,
                "dataset-root": dataset_root,
                "num-silos": silos,
                "split": split,
                "rounds": rounds,
                "round-interval": round_interval,
                "max-idle-rounds": max_idle_rounds,
                "increments": increments,
                "architecture": model,
                "base-weights": base_weights,
                "tangent": tangent,
                "epochs": epochs,
                "lr": lr,
                "loss": loss,
                "kappa": kappa,
                "weighting": weighting,
                "seed": seed,
                "client-device": client_device,
                "upload-dtype": upload_dtype,
                "dp-epsilon": dp_epsilon,
                "dp-delta": dp_delta,
                "dp-clip": dp_clip,
                "dp-noise-multiplier": dp_noise_multiplier,
                "min-silos": supernodes or silos,
            }
        )
        resolve_device(client_device)  # every simulated silo runs on this machine
        check_continuation(config, config.data_spec())
        out = err_console if as_json else console
        planned = f"{rounds} round(s)" if rounds else "continual rounds until stopped"
        out.print(
            f"simulating {supernodes or silos} silos of {dataset} ({split} split), "
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
            summaries = simulate(
                config, num_supernodes=supernodes or None, on_round=progress, stop=stop
            )
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


def recorded_increments_of(registry: Path) -> int | None:
    """The increments per silo a registry's silos were cut into (None for a new one)."""
    return recorded_increments(FederationConfig.from_run_config({"registry": str(registry)}))
