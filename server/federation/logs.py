"""The ServerApp's own log lines in ``flwr run --stream`` (round progress, refusals).

Flower 1.42 runs the ServerApp in ``flwr-serverapp`` (or ``flwr-simulation``), which
mirrors that process's stdout and stderr to the SuperLink, where ``flwr run --stream`` and
``flwr log`` read them (flwr/supercore/logger.py: ``mirror_output_to_queue``). Flower
configures only its own ``flwr`` logger there; the project logs through ``tmc.*``
loggers, which had no handler, so Python dropped their INFO lines and the
stream showed nothing but Flower's own (often empty) ``INFO :`` lines.

``TMC_LOG_FORMAT=json`` in the ServerApp's environment (the SuperExec's) makes every line
of that stream, Flower's included, one JSON object; ``TMC_LOG_LEVEL`` sets the level.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

from tmc.common.logs import handler, log_format, log_level

PROJECT_LOGGERS = ("tmc",)


def stream_project_logs(level: int | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Send the project's log records to Flower's console handler, which writes to the
    mirrored stdout, so they reach ``flwr run --stream`` formatted like Flower's own.

    Only when nobody has configured logging (the root logger has no handler): a process
    that did (``tmc simulate``, pytest) keeps its own set-up, without duplicate lines.
    Idempotent. Returns whether the handler was installed (or already was). ``level``
    and the format default to ``TMC_LOG_LEVEL`` (info) and ``TMC_LOG_FORMAT`` (text).
    """
    if logging.getLogger().handlers:
        return False
    from flwr.common.logger import console_handler

    kind = log_format(env=env)
    level = log_level(level, env=env, default=logging.INFO)
    if kind == "json":
        # Flower's console handler formats its own way; JSON lines on the same mirrored
        # stdout instead, for Flower's records too.
        for name in ("flwr", *PROJECT_LOGGERS):
            logger = logging.getLogger(name)
            if not any(getattr(h, "tmc_handler", False) for h in logger.handlers):
                logger.addHandler(handler("json", sys.stdout))
            if console_handler in logger.handlers:
                logger.removeHandler(console_handler)
            if name != "flwr" and (logger.level == logging.NOTSET or logger.level > level):
                logger.setLevel(level)
        return True
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if console_handler not in logger.handlers:
            logger.addHandler(console_handler)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
    return True


__all__ = ["PROJECT_LOGGERS", "stream_project_logs"]
