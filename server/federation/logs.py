"""The ServerApp's own log lines in ``flwr run --stream`` (round progress, refusals).

Flower 1.42 runs the ServerApp in ``flwr-serverapp`` (or ``flwr-simulation``), which
mirrors that process's stdout and stderr to the SuperLink, where ``flwr run --stream`` and
``flwr log`` read them (flwr/supercore/logger.py: ``mirror_output_to_queue``). Flower
configures only its own ``flwr`` logger there; the project logs through ``tmc.*``
loggers, which had no handler, so Python dropped their INFO lines and the
stream showed nothing but Flower's own (often empty) ``INFO :`` lines.
"""

from __future__ import annotations

import logging

PROJECT_LOGGERS = ("tmc",)


def stream_project_logs(level: int = logging.INFO) -> bool:
    """Send the project's log records to Flower's console handler, which writes to the
    mirrored stdout, so they reach ``flwr run --stream`` formatted like Flower's own.

    Only when nobody has configured logging (the root logger has no handler): a process
    that did (``tmc simulate``, pytest) keeps its own set-up, without duplicate lines.
    Idempotent. Returns whether the handler was installed (or already was).
    """
    if logging.getLogger().handlers:
        return False
    from flwr.common.logger import console_handler

    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if console_handler not in logger.handlers:
            logger.addHandler(console_handler)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
    return True


__all__ = ["PROJECT_LOGGERS", "stream_project_logs"]
