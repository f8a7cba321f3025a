"""A run config Flower hands the ServerApp with a misspelt key or a bad value: the
ServerApp logs one line naming the key (and the known keys), then fails the run."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flwr.app import Context, RecordDict

from tmc.common.errors import ConfigError
from tmc.common.federation.config import FederationConfig
from tmc.server.federation.app import make_server_app


def _context(run_config: dict[str, Any]) -> Context:
    return Context(run_id=7, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)


def test_a_misspelt_key_names_the_closest_and_the_known_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        FederationConfig.from_run_config({"roundz": 3})
    message = str(caught.value)
    assert "unknown key 'roundz'" in message
    assert "did you mean rounds?" in message
    assert "round-timeout" in message  # the known keys are listed
    assert caught.value.__cause__ is None  # no second traceback of pydantic's


def test_a_bad_value_names_the_key_and_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        FederationConfig.from_run_config({"rounds": -1, "lr": "fast"})
    message = str(caught.value)
    assert "rounds: Input should be greater than or equal to 0 (got -1)" in message
    assert "lr: " in message
    assert "(got 'fast')" in message


@pytest.mark.parametrize(
    ("run_config", "named"),
    [({"roundz": 3}, "unknown key 'roundz'"), ({"num-silos": 0}, "num-silos: ")],
)
def test_the_server_app_logs_one_line_and_fails_the_run(
    run_config: dict[str, Any], named: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_server_app()
    with (
        caplog.at_level(logging.INFO, logger="tmc"),
        pytest.raises(ConfigError, match="invalid run config") as caught,
    ):
        app(None, _context(run_config))  # type: ignore[arg-type]  # fails before the grid
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert line.startswith("error: invalid run config")
    assert named in line
    assert "\n" not in line
    assert errors[0].exc_info is None  # the line carries no traceback
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
