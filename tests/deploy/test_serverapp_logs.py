"""The ServerApp's log lines reach Flower's console handler, which ``flwr-serverapp``
mirrors to ``flwr run --stream`` (server/federation/logs.py)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from flwr.common.logger import console_handler

from tmc.server.federation.logs import PROJECT_LOGGERS, stream_project_logs


@contextlib.contextmanager
def bare_logging() -> Iterator[None]:
    """No root handler, as in flwr-serverapp (pytest's own capture handlers included, which
    it adds to the root for each test phase); restored afterwards."""
    root = logging.getLogger()
    saved_root = root.handlers[:]
    saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in PROJECT_LOGGERS
    }
    root.handlers.clear()
    try:
        yield
    finally:
        root.handlers[:] = saved_root
        for name, (handlers, level) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).setLevel(level)


def test_round_lines_reach_flowers_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(console_handler, "stream", stream)
    with bare_logging():
        assert stream_project_logs()
        assert stream_project_logs()  # idempotent: one handler, one line per record
        logging.getLogger("tmc.server.federation.rounds").info("round %d: %d silos train", 1, 3)
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].endswith("round 1: 3 silos train")
    assert "INFO" in lines[0]


def test_a_configured_process_keeps_its_own_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        before = logging.getLogger("tmc.server").handlers[:]
        assert not stream_project_logs()
        assert logging.getLogger("tmc.server").handlers == before
    finally:
        root.removeHandler(handler)


def test_tmc_log_format_json_makes_the_stream_json(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)  # flwr-serverapp mirrors its stdout
    flwr = logging.getLogger("flwr")
    monkeypatch.setattr(flwr, "handlers", flwr.handlers[:])  # restored afterwards
    with bare_logging():
        assert stream_project_logs(env={"TMC_LOG_FORMAT": "json", "TMC_LOG_LEVEL": "info"})
        assert console_handler not in flwr.handlers
        logging.getLogger("tmc.server.federation.rounds").info(
            "round %d done", 4, extra={"round": 4, "silos": ["silo-a"]}
        )
        logging.getLogger("tmc.server.federation.rounds").debug("below the level")
    (line,) = [line for line in stream.getvalue().splitlines() if line.strip()]
    record = json.loads(line)
    assert record["message"] == "round 4 done"
    assert record["level"] == "info"
    assert record["logger"] == "tmc.server.federation.rounds"
    assert (record["round"], record["silos"]) == (4, ["silo-a"])
