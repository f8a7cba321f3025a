"""The silo side: the Flower ClientApp and what a silo node needs (its data, its θ0 cache)."""

from tmc.client.app import NodeRuntime, app, make_client_app
from tmc.client.node import NodeSettings
from tmc.client.silo import SiloSource, open_silo
from tmc.client.theta0_cache import Theta0Cache, node_cache_dir

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
