"""How every process of the project logs: plain text for people, or one JSON object per
line for log collectors (Loki, Elasticsearch, ``jq``).

The format and level come from the command line (``tmc --log-format json``,
``-v``/``-vv``) or, for processes the project does not start with its own command line
(the ServerApp under ``flwr-serverapp``, a silo's ClientApp under ``flwr-clientapp``), from
the environment: ``TMC_LOG_FORMAT`` (``text`` | ``json``) and ``TMC_LOG_LEVEL`` (``debug``,
``info``, ``warning``, ``error``). An explicit option wins over the environment.

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, every extra
field given with ``log.info(..., extra={...})``, and ``exception`` when there is one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal, TextIO, cast, get_args

from tmc.common.errors import ConfigError

LogFormat = Literal["text", "json"]
FORMAT_ENV = "TMC_LOG_FORMAT"
LEVEL_ENV = "TMC_LOG_LEVEL"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in document:
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        return json.dumps(document, default=str, ensure_ascii=False)


def log_format(explicit: str | None = None, env: Mapping[str, str] | None = None) -> LogFormat:
    """``explicit``, else ``TMC_LOG_FORMAT``, else text; anything else is a ConfigError."""
    source = os.environ if env is None else env
    value = (explicit or source.get(FORMAT_ENV) or "text").strip().lower()
    if value not in get_args(LogFormat):
        where = "--log-format" if explicit else FORMAT_ENV
        raise ConfigError(f"{where} is {value!r}; use text or json")
    return cast(LogFormat, value)


def log_level(
    explicit: int | None = None, env: Mapping[str, str] | None = None, default: int = logging.INFO
) -> int:
    """``explicit``, else ``TMC_LOG_LEVEL``, else ``default``."""
    if explicit is not None:
        return explicit
    source = os.environ if env is None else env
    value = source.get(LEVEL_ENV, "").strip().lower()
    if not value:
        return default
    if value not in LEVELS:
        raise ConfigError(f"{LEVEL_ENV} is {value!r}; use one of {', '.join(LEVELS)}")
    return LEVELS[value]


def formatter(kind: LogFormat, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(text_format)


def handler(kind: LogFormat, stream: TextIO, text_format: str = TEXT_FORMAT) -> logging.Handler:
    """A stream handler writing ``kind`` lines; marked so that set-ups stay idempotent."""
    made = logging.StreamHandler(stream)
    made.setFormatter(formatter(kind, text_format))
    made.tmc_handler = True  # type: ignore[attr-defined]
    return made


def configure_logging(
    kind: LogFormat, level: int, *, stream: TextIO, logger: str = ""
) -> logging.Handler:
    """Make ``logger`` (the root by default) write ``kind`` lines at ``level`` to
    ``stream``, replacing a handler an earlier call installed."""
    target = logging.getLogger(logger)
    for old in [h for h in target.handlers if getattr(h, "tmc_handler", False)]:
        target.removeHandler(old)
    installed = handler(kind, stream)
    target.addHandler(installed)
    target.setLevel(level)
    return installed


__all__ = [
    "FORMAT_ENV",
    "LEVELS",
    "LEVEL_ENV",
    "JsonFormatter",
    "LogFormat",
    "configure_logging",
    "formatter",
    "handler",
    "log_format",
    "log_level",
]
