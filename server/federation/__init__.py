"""The Flower ServerApp: rounds over the Grid, silo identities, round history."""

from tmc.server.federation.app import app, make_server_app, run_federation
from tmc.server.federation.continual import run_continually
from tmc.server.federation.continuation import (
    check_continuation,
    continuation_problems,
    recorded_increments,
)
from tmc.server.federation.history import RoundSummary, read_history
from tmc.server.federation.identity import SiloDirectory
from tmc.server.federation.rounds import Federation
from tmc.server.federation.stopping import StopRequest

__all__ = [
    "Federation",
    "RoundSummary",
    "SiloDirectory",
    "StopRequest",
    "app",
    "check_continuation",
    "continuation_problems",
    "make_server_app",
    "read_history",
    "recorded_increments",
    "run_continually",
    "run_federation",
]
