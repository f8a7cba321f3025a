"""Running a whole federation on one machine with Flower's simulation engine (Ray).

Flower's ``run_simulation`` runs the ServerApp in a thread and the ClientApps in Ray
actors; it passes no run config, so the validated :class:`FederationConfig` is handed to
both apps directly. Ray is shut down when the run ends, also when it fails.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable

import torch
from flwr.clientapp import ClientApp
from flwr.simulation import run_simulation

from tmc.client import make_client_app
from tmc.common.errors import ConfigError
from tmc.common.federation.config import FederationConfig
from tmc.server.federation.app import make_server_app
from tmc.server.federation.history import RoundSummary
from tmc.server.federation.stopping import StopRequest
from tmc.server.registry import run_lock


class _HideDeprecation(logging.Filter):
    # run_simulation warns that it is deprecated in favour of `flwr run`, which the project
    # also supports; in-process is what a single-machine simulation needs (docs/notes/flower.md).
    def filter(self, record: logging.LogRecord) -> bool:
        return "DEPRECATED FEATURE" not in record.getMessage()


def simulate(
    config: FederationConfig,
    *,
    num_supernodes: int | None = None,
    on_round: Callable[[RoundSummary], None] | None = None,
    client_app: ClientApp | None = None,
    cpus_per_client: float = 1.0,
    gpus_per_client: float | None = None,
    stop: StopRequest | None = None,
) -> list[RoundSummary]:
    """Run ``config.rounds`` rounds with ``num_supernodes`` simulated silos (default: all
    ``num-silos``); node ``i`` serves ``silo-i``. Returns the round summaries. A continual
    run (``rounds = 0``) ends when ``stop`` is requested or after ``max-idle-rounds``."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "the simulation engine (Ray) is not installed here: install the project's "
            "'simulation' extra (pip install '.[simulation]'; `make` does); deployments "
            "without it run `flwr run` against a SuperLink"
        )
    nodes = num_supernodes or config.num_silos
    if nodes > config.num_silos:
        raise ConfigError(
            f"{nodes} supernodes but the data is cut into num-silos={config.num_silos}"
        )
    if gpus_per_client is None:
        gpus_per_client = 1.0 / min(nodes, 4) if torch.cuda.is_available() else 0.0
    summaries: list[RoundSummary] = []

    def collect(summary: RoundSummary) -> None:
        summaries.append(summary)
        if on_round is not None:
            on_round(summary)

    # Keep Ray from rewriting CUDA_VISIBLE_DEVICES for CPU-only actors (its own advice).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    flwr_logger = logging.getLogger("flwr")
    hide = _HideDeprecation()
    flwr_logger.addFilter(hide)
    for handler in flwr_logger.handlers:
        handler.addFilter(hide)
    try:
        with run_lock(config.registry_path):  # one run per registry
            run_simulation(
                server_app=make_server_app(config, on_round=collect, stop=stop, lock_held=True),
                client_app=client_app or make_client_app(config.to_run_config()),
                num_supernodes=nodes,
                backend_config={
                    "client_resources": {"num_cpus": cpus_per_client, "num_gpus": gpus_per_client},
                    "init_args": {"logging_level": "ERROR", "log_to_driver": True},
                },
            )
    finally:
        flwr_logger.removeFilter(hide)
        for handler in flwr_logger.handlers:
            handler.removeFilter(hide)
    return summaries
