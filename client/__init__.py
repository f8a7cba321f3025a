"""The silo side: the Flower ClientApp and what a silo node needs (its data, its θ0 cache)."""

from client.app import NodeRuntime, app, make_client_app
from client.node import NodeSettings
from client.silo import SiloSource, open_silo
from client.theta0_cache import Theta0Cache, node_cache_dir

__all__ = [
    "NodeRuntime",
    "NodeSettings",
    "SiloSource",
    "Theta0Cache",
    "app",
    "make_client_app",
    "node_cache_dir",
    "open_silo",
]
