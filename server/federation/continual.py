"""A federation that keeps running: ``rounds = 0`` means "until stopped".

Every ``round-interval`` seconds the server asks each online silo what it holds (the
hello); a round starts only when some silo has an increment it has not contributed, and
then only those silos get a training message; the others idle. A check that finds
nothing new is a *skipped round*: nothing is trained, committed, numbered or written to
the history. The run ends when it is stopped (``flwr stop RUN_ID``, SIGTERM or SIGINT to
the ServerApp's process), always between commits, or after ``max-idle-rounds`` skipped
rounds in a row when that is set (tests, batch jobs that should end when the data do).
"""

from __future__ import annotations

import logging

from tmc.common.errors import FederationError
from tmc.server.federation.history import RoundSummary
from tmc.server.federation.rounds import Federation

log = logging.getLogger(__name__)


def run_continually(federation: Federation) -> list[RoundSummary]:
    """Rounds until ``federation.stop`` is requested (or ``max-idle-rounds`` skipped ones
    in a row); the summaries of the rounds that ran."""
    config, stop = federation.config, federation.stop
    summaries: list[RoundSummary] = []
    skipped = 0
    log.info(
        "continual run: checking for new increments every %.0f s until stopped%s",
        config.round_interval,
        f" or {config.max_idle_rounds} skipped rounds in a row" if config.max_idle_rounds else "",
    )
    while not stop.requested():
        number = federation.last_round() + 1
        try:
            summary = federation.round_if_new(number)
        except FederationError as exc:  # too few silos online now: try again later
            log.warning("round %d skipped: %s", number, exc)
            summary = None
        if summary is not None:
            summaries.append(summary)
            skipped = 0
        elif not stop.requested():
            skipped += 1
            if config.max_idle_rounds and skipped >= config.max_idle_rounds:
                log.info("%d skipped rounds in a row (max-idle-rounds): stopping", skipped)
                break
        stop.wait(config.round_interval)
    log.info("continual run ends after %d round(s)", len(summaries))
    return summaries


__all__ = ["run_continually"]
