"""A silo node's own settings, from Flower's ``node_config``.

Deployment: ``flower-supernode --node-config 'silo-id="hospital-a" data-path="/data/a"'``
(optionally ``device="cuda:0"``, ``cache-dir="/var/cache/tmc"``, ``test-fraction=0.2``: the
part of an image folder held out for local testing when it has no ``test/`` folder).
Simulation: Flower sets ``partition-id`` and ``num-partitions``; the silo is then
``silo-<partition-id>`` of the federation's partition of the dataset in the run config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from tmc.common.components.component import SILO_PATTERN
from tmc.common.errors import ConfigError
from tmc.common.schema import StrictModel


def _hyphen(name: str) -> str:
    return name.replace("_", "-")


class NodeSettings(StrictModel):
    """What a node knows about itself before any message arrives."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_hyphen, populate_by_name=True
    )

    silo_id: str | None = Field(None, pattern=SILO_PATTERN)
    data_path: Path | None = None
    device: str | None = Field(None, pattern=r"^(auto|cpu|cuda|cuda:\d+)$")
    cache_dir: Path | None = None
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    partition_id: int | None = Field(None, ge=0)
    num_partitions: int | None = Field(None, ge=1)

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> NodeSettings:
        try:
            settings = cls.model_validate(dict(node_config))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid node config: {problems}") from exc
        if settings.data_path is None and settings.partition_id is None:
            raise ConfigError(
                "node config must set data-path (an image folder of the silo's own data, or a "
                "folder written by `tmc data export`) or, in simulation, Flower sets "
                "partition-id"
            )
        return settings
