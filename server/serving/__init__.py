"""``tmc serve``: the federation's current composed model over HTTP, following the
registry (new versions, forgets) without a restart; see ``app.create_app``."""

from tmc.server.serving.app import PREDICT_PATH, create_app
from tmc.server.serving.auth import BearerAuth
from tmc.server.serving.errors import (
    ModelUnavailableError,
    RequestTooLargeError,
    ServingError,
    UnsupportedMediaError,
)
from tmc.server.serving.holder import LiveModel, Served
from tmc.server.serving.metrics import ServingMetrics
from tmc.server.serving.settings import MIB, ServeSettings
from tmc.server.serving.watch import RegistryWatch

__all__ = [
    "MIB",
    "PREDICT_PATH",
    "BearerAuth",
    "LiveModel",
    "ModelUnavailableError",
    "RegistryWatch",
    "RequestTooLargeError",
    "ServeSettings",
    "Served",
    "ServingError",
    "ServingMetrics",
    "UnsupportedMediaError",
    "create_app",
]
