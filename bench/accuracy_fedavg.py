"""FedAvg, the federated peer users know: Flower's own ``FedAvg`` strategy (1.42 message
API) through Flower's simulation engine (Ray), one supernode per silo.

Fairness (docs/notes/benchmarks.md): the same θ0, the same trainable parameters (the base's tangent
scope, fine-tuned non-linearly), the same loss, penalty and batch size, the same silo
training parts; ``rounds`` × ``epochs_per_round`` = the other methods' local epochs. Each
round's local training is ``common.training.finetune`` with that many epochs (its step
decay runs within the round; its penalty pulls towards the round's global model).
Aggregation is the strategy's own: weighted by ``num-examples``.

Every job (scenario × learning rate) of one silo count runs in one simulation, one
``strategy.start`` after the other, so Ray starts once. The ClientApps rebuild the
scenario's data from the run's ``ConfigRecord`` (``bench.accuracy_setup.prepare``).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from bench.accuracy_methods import Outputs, outputs_of, train_config
from bench.accuracy_setup import Prepared, Scenario, prepare
from tmc.common.errors import ConfigError, ModelError
from tmc.common.threads import torch_threads
from tmc.common.training import finetune

REPO_ROOT = Path(__file__).resolve().parents[1]
_SCENARIO_KEYS = (
    "split",
    "dataset",
    "data_root",
    "base_weights",
    "architecture",
    "base",
    "loss_classes",
)


@dataclass(frozen=True)
class FedAvgJob:
    """One FedAvg run: a scenario at one learning rate."""

    scenario: Scenario
    lr: float


def job_config(job: FedAvgJob, prepared: Prepared, epochs_per_round: int) -> ConfigRecord:
    """What every ClientApp needs to rebuild the job's data and train (flat values)."""
    scenario = job.scenario
    values: dict[str, str | int | float] = {k: getattr(scenario, k) for k in _SCENARIO_KEYS}
    values.update(
        num_silos=scenario.num_silos,
        seed=scenario.seed,
        lr=job.lr,
        epochs=epochs_per_round,
        base_sha256=prepared.base.sha256,
    )
    return ConfigRecord(values)  # type: ignore[arg-type]


def _number(config: ConfigRecord, key: str) -> float:
    value = config[key]
    if not isinstance(value, int | float):
        raise ConfigError(f"FedAvg config {key!r} must be a number, got {value!r}")
    return float(value)


def scenario_of(config: ConfigRecord) -> Scenario:
    """The scenario a ClientApp must rebuild, from the job's ConfigRecord."""
    values = {k: str(config[k]) for k in _SCENARIO_KEYS}
    return Scenario(
        num_silos=int(_number(config, "num_silos")),
        seed=int(_number(config, "seed")),
        **values,  # type: ignore[arg-type]
    )


def tangent_arrays(network: torch.nn.Module, names: Sequence[str]) -> ArrayRecord:
    params = dict(network.named_parameters())
    return ArrayRecord({n: params[n].detach().cpu().clone() for n in names})


def load_arrays(network: torch.nn.Module, arrays: ArrayRecord) -> torch.nn.Module:
    """A copy of ``network`` with the parameters in ``arrays`` (a subset) replaced."""
    updated = copy.deepcopy(network)
    params = dict(updated.named_parameters())
    with torch.no_grad():
        for name, tensor in arrays.to_torch_state_dict().items():
            params[name].copy_(tensor)
    return updated


def make_client_app(*, device: str = "cpu", threads: int = 1) -> ClientApp:
    """Node ``partition-id`` i is silo i; it fine-tunes the global model on its part."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        with torch_threads(threads):
            return _train(msg, context)

    def _train(msg: Message, context: Context) -> Message:
        config = msg.content.config_records["config"]
        prepared = prepare(scenario_of(config))
        if prepared.base.sha256 != config["base_sha256"]:
            raise ModelError("the ClientApp rebuilt another θ0 than the server's")
        silo = int(context.node_config["partition-id"])
        names = prepared.base.tangent_names
        network = load_arrays(prepared.base.network, msg.content.array_records["arrays"])
        recipe = train_config(
            prepared, lr=_number(config, "lr"), epochs=int(_number(config, "epochs")), device=device
        ).model_copy(update={"seed": prepared.scenario.seed + int(_number(config, "server-round"))})
        tuned, report = finetune(network, names, prepared.train_parts[silo], recipe)
        metrics = MetricRecord({"num-examples": report.num_examples, "loss": report.final_loss})
        content = RecordDict({"arrays": tangent_arrays(tuned, names), "metrics": metrics})
        return Message(content, reply_to=msg)

    return app


def make_server_app(
    jobs: Sequence[FedAvgJob],
    results: dict[FedAvgJob, Outputs],
    *,
    rounds: int,
    epochs_per_round: int,
    device: str = "cpu",
    on_job: Callable[[FedAvgJob, Outputs], None] | None = None,
) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        for job in jobs:
            prepared = prepare(job.scenario)
            nodes = job.scenario.num_silos
            strategy = FedAvg(
                fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes
            )
            names = prepared.base.tangent_names
            result = strategy.start(
                grid=grid,
                initial_arrays=tangent_arrays(prepared.base.network, names),
                num_rounds=rounds,
                train_config=job_config(job, prepared, epochs_per_round),
            )
            final = load_arrays(prepared.base.network, result.arrays)
            results[job] = outputs_of(final, prepared, device)
            if on_job is not None:
                on_job(job, results[job])

    return app


def run_fedavg(
    jobs: Sequence[FedAvgJob],
    *,
    rounds: int,
    epochs: int,
    device: str = "cpu",
    threads: int = 1,
    on_job: Callable[[FedAvgJob, Outputs], None] | None = None,
) -> dict[FedAvgJob, Outputs]:
    """Run every job with Flower's FedAvg, ``rounds`` rounds of ``epochs // rounds`` local
    epochs each; one simulation per silo count. Returns each job's final model outputs."""
    if epochs % rounds:
        raise ConfigError(f"{epochs} epochs cannot be split evenly into {rounds} FedAvg rounds")
    results: dict[FedAvgJob, Outputs] = {}
    # Ray workers import this module: make the repository importable wherever they start.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), saved) if p)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    quiet = [logging.getLogger(name) for name in ("flwr", "ray")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        for silos in sorted({job.scenario.num_silos for job in jobs}):
            group = [job for job in jobs if job.scenario.num_silos == silos]
            for job in group:
                prepare(job.scenario)  # θ0 cached on disk before the actors need it
            run_simulation(
                server_app=make_server_app(
                    group,
                    results,
                    rounds=rounds,
                    epochs_per_round=epochs // rounds,
                    device=device,
                    on_job=on_job,
                ),
                client_app=make_client_app(device=device, threads=threads),
                num_supernodes=silos,
                backend_config={
                    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                    "init_args": {"logging_level": "ERROR", "log_to_driver": True},
                },
            )
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    missing = [job for job in jobs if job not in results]
    if missing:
        raise RuntimeError(f"FedAvg did not finish {len(missing)} of {len(jobs)} jobs")
    return results
