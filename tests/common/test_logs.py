"""The one log set-up of every process (common/logs.py): JSON lines with time, level,
logger, message, extra fields and exceptions; format and level from options or env."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tmc.common.errors import ConfigError
from tmc.common.logs import configure_logging, log_format, log_level


def test_json_lines_carry_the_fields_and_the_exception() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tmc.test.logs")
    handler = configure_logging("json", logging.INFO, stream=stream, logger=logger.name)
    try:
        logger.propagate = False
        logger.info("accepted %s", "c1", extra={"silo": "silo-a", "bytes": 12})
        try:
            raise ValueError("bad reply")
        except ValueError:
            logger.exception("unreadable reply")
        logger.debug("not shown")
        configure_logging("json", logging.INFO, stream=stream, logger=logger.name)
        assert len([h for h in logger.handlers if getattr(h, "tmc_handler", False)]) == 1
    finally:
        logger.removeHandler(handler)
        for extra in [h for h in logger.handlers if getattr(h, "tmc_handler", False)]:
            logger.removeHandler(extra)
        logger.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "accepted c1"
    assert (first["level"], first["logger"]) == ("info", "tmc.test.logs")
    assert (first["silo"], first["bytes"]) == ("silo-a", 12)
    assert first["time"].endswith("+00:00")
    assert second["level"] == "error"
    assert "ValueError: bad reply" in second["exception"]


def test_format_and_level_come_from_the_option_or_the_environment() -> None:
    assert log_format(None, env={}) == "text"
    assert log_format(None, env={"TMC_LOG_FORMAT": "JSON"}) == "json"
    assert log_format("text", env={"TMC_LOG_FORMAT": "json"}) == "text"  # the option wins
    assert log_level(None, env={"TMC_LOG_LEVEL": "debug"}) == logging.DEBUG
    assert log_level(logging.ERROR, env={"TMC_LOG_LEVEL": "debug"}) == logging.ERROR
    assert log_level(None, env={}, default=logging.WARNING) == logging.WARNING
    with pytest.raises(ConfigError, match="TMC_LOG_FORMAT is 'xml'"):
        log_format(None, env={"TMC_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="TMC_LOG_LEVEL is 'loud'"):
        log_level(None, env={"TMC_LOG_LEVEL": "loud"})


def test_the_cli_refuses_an_unknown_log_format_in_one_line() -> None:
    from typer.testing import CliRunner

    from tmc.cli import app

    result = CliRunner().invoke(app, ["--log-format", "xml", "registry", "--help"])
    assert result.exit_code == 2, result.output
    assert "error: --log-format is 'xml'; use text or json" in result.output
    refused = CliRunner().invoke(app, ["registry", "--help"], env={"TMC_LOG_FORMAT": "yaml"})
    assert refused.exit_code == 2, refused.output
    assert "TMC_LOG_FORMAT is 'yaml'" in refused.output
