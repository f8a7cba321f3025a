"""The ServerApp: open the registry, materialise θ0, run the rounds.

Flower loads ``app`` (``[tool.flwr.app.components] serverapp``) and passes the run config
from ``[tool.flwr.app.config]`` and ``--run-config``; ``tmc simulate`` builds its own app
with :func:`make_server_app` and a config object, since the in-process runner has none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from tmc.common.data import DataSpec, LabeledDataset, load_test_set
from tmc.common.errors import TMCError
from tmc.common.federation.config import FederationConfig
from tmc.common.models import BaseModelSpec, MaterializedBase, from_theta0, materialize
from tmc.server.federation.continual import run_continually
from tmc.server.federation.history import RoundSummary
from tmc.server.federation.logs import stream_project_logs
from tmc.server.federation.rounds import Federation
from tmc.server.federation.stopping import StopRequest
from tmc.server.registry import BaseRecord, PrivacyFloor, Registry, run_lock
from tmc.server.registry.sqlite import DB_FILENAME

log = logging.getLogger(__name__)


def run_federation(
    grid: Grid,
    config: FederationConfig,
    *,
    run_id: int,
    on_round: Callable[[RoundSummary], None] | None = None,
    stop: StopRequest | None = None,
    lock_held: bool = False,
) -> list[RoundSummary]:
    """Everything the ServerApp does, given a Grid and a validated config, holding the
    registry's run lock throughout (a second run on the same registry is refused);
    ``lock_held`` when the caller holds it already (``tmc simulate``, which refuses
    before it starts the simulation engine). A continual run (``rounds = 0``) goes on
    until ``stop`` is requested, or SIGINT/SIGTERM arrive when this runs in the main
    thread (``flwr-serverapp``)."""
    if lock_held:
        return _run_locked(grid, config, run_id=run_id, on_round=on_round, stop=stop)
    with run_lock(config.registry_path):
        return _run_locked(grid, config, run_id=run_id, on_round=on_round, stop=stop)


def _run_locked(
    grid: Grid,
    config: FederationConfig,
    *,
    run_id: int,
    on_round: Callable[[RoundSummary], None] | None,
    stop: StopRequest | None,
) -> list[RoundSummary]:
    data = config.data_spec()
    base = _base(config, data)
    log.info(
        "base %s (%s, %d tangent parameters), classes %s, inputs %s, registry %s",
        base.sha256[:12],
        config.architecture,
        base.num_tangent_parameters,
        list(data.classes)[:20],
        data.input.describe(),
        config.registry_path,
    )
    test_set = _server_test_set(config, data)
    with Registry.open_or_create(
        config.registry_path,
        base=BaseRecord.from_materialized(base),
        weighting=config.weighting,
        max_norm=config.max_norm,
        theta0=base.theta0(),
        data=data,
        privacy=PrivacyFloor.of(config.privacy_config()),
    ) as registry:
        federation = Federation(
            grid,
            config,
            registry,
            base,
            data=data,
            run_id=run_id,
            test_set=test_set,
            on_round=on_round,
            stop=stop,
        )
        if not config.continual:
            return federation.run()
        with federation.stop.on_signals():
            return run_continually(federation)


def _base(config: FederationConfig, data: DataSpec) -> MaterializedBase:
    """θ0: from the registry when it was made from this very spec (no cache, no weights
    file, no pre-training needed), else materialised from the spec."""
    spec = config.base_spec(data)
    root = Path(config.registry_path)
    if (root / DB_FILENAME).is_file():
        with Registry.open(root, actor="server") as registry:
            stored = BaseModelSpec.model_validate_json(registry.base.spec_json)
            if stored == spec and registry.blobs.has_theta0():
                return from_theta0(spec, registry.theta0(), expected_sha256=registry.base.sha256)
    return materialize(spec)


def _server_test_set(config: FederationConfig, data: DataSpec) -> LabeledDataset | None:
    if not config.evaluate_server:
        return None
    spec = config.test_dataset_spec()
    if spec is None:
        log.info("no server test set (dataset-root is empty): server evaluation is skipped")
        return None
    return load_test_set(spec, data)


def make_server_app(
    config: FederationConfig | None = None,
    *,
    on_round: Callable[[RoundSummary], None] | None = None,
    stop: StopRequest | None = None,
    lock_held: bool = False,
) -> ServerApp:
    """A ServerApp; with ``config`` it ignores Flower's run config (in-process runs);
    ``stop`` ends a continual run from outside (``tmc simulate``); ``lock_held`` when the
    caller holds the registry's run lock for it."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if config is not None:  # in-process: the caller reports its own errors
            run_federation(
                grid,
                config,
                run_id=context.run_id,
                on_round=on_round,
                stop=stop,
                lock_held=lock_held,
            )
            return
        # Run by Flower (flwr-serverapp): progress and refusals go to `flwr run --stream`.
        stream_project_logs()
        try:
            effective = FederationConfig.from_run_config(context.run_config)
            run_federation(grid, effective, run_id=context.run_id, on_round=on_round, stop=stop)
        except TMCError as exc:
            # The reason in one line first; re-raised so that Flower marks the run failed
            # (without the chained cause, whose traceback told nothing more).
            log.error("error: %s", exc)
            raise exc.with_traceback(None) from None

    return app


app = make_server_app()
"""The ServerApp Flower loads."""
