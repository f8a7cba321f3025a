"""The ServerApp: open the registry, materialise θ0, run the rounds.

Flower loads ``app`` (``[tool.flwr.app.components] serverapp``) and passes the run config
from ``[tool.flwr.app.config]`` and ``--run-config``; ``tmc simulate`` builds its own app
with :func:`make_server_app` and a config object, since the in-process runner has none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from common.data import load_dataset
from common.federation.config import FederationConfig
from common.models import materialize
from server.federation.history import RoundSummary
from server.federation.rounds import Federation
from server.registry import BaseRecord, Registry

log = logging.getLogger(__name__)


def run_federation(
    grid: Grid,
    config: FederationConfig,
    *,
    run_id: int,
    on_round: Callable[[RoundSummary], None] | None = None,
) -> list[RoundSummary]:
    """Everything the ServerApp does, given a Grid and a validated config."""
    base = materialize(config.base_spec())
    log.info(
        "base %s (%s, %d tangent parameters), registry %s",
        base.sha256[:12],
        config.architecture,
        base.num_tangent_parameters,
        config.registry_path,
    )
    test_set = load_dataset(config.dataset_spec(), train=False) if config.evaluate_server else None
    with Registry.open_or_create(
        config.registry_path,
        base=BaseRecord.from_materialized(base),
        weighting=config.weighting,
        max_norm=config.max_norm,
    ) as registry:
        federation = Federation(
            grid, config, registry, base, run_id=run_id, test_set=test_set, on_round=on_round
        )
        return federation.run()


def make_server_app(
    config: FederationConfig | None = None,
    *,
    on_round: Callable[[RoundSummary], None] | None = None,
) -> ServerApp:
    """A ServerApp; with ``config`` it ignores Flower's run config (in-process runs)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        effective = config or FederationConfig.from_run_config(context.run_config)
        run_federation(grid, effective, run_id=context.run_id, on_round=on_round)

    return app


app = make_server_app()
"""The ServerApp Flower loads."""
