"""Whether a run may continue an existing registry: the same base, data spec, weighting
and norm bound, and (for simulated silos) the same cut of the same dataset.

A second ``tmc simulate`` with another ``--split`` or ``--silos`` would give ``silo-0``
other samples than those its components were trained on, and mix two partitions in one
model without anyone noticing; it is refused before anything starts, saying what differs.
"""

from __future__ import annotations

import json

from tmc.common.data import DataSpec, load_dataset
from tmc.common.federation import PartitionRecord
from tmc.common.federation.config import FederationConfig
from tmc.server.registry import PrivacyFloor, Registry, RegistryMismatchError
from tmc.server.registry.admission import spec_differences
from tmc.server.registry.privacy import shortfall
from tmc.server.registry.sqlite import DB_FILENAME


def simulated_partition(config: FederationConfig) -> PartitionRecord:
    """The partition that simulated silos report for ``config``."""
    identity = load_dataset(config.dataset_spec(), train=True).identity
    return PartitionRecord(identity=identity, partition=config.partition_spec())


def recorded_increments(config: FederationConfig) -> int | None:
    """The increments per silo of the registry's recorded partition, if it has one."""
    if not (config.registry_path / DB_FILENAME).is_file():
        return None
    with Registry.open(config.registry_path, actor="cli") as registry:
        partition = registry.settings.partition
    return partition.partition.num_increments if partition is not None else None


def _base_differences(stored_json: str, wanted_json: str) -> list[str]:
    # A weights file may move (the registry holds θ0 and the hash decides), so its path is
    # not a difference; everything else changes θ0.
    stored, wanted = json.loads(stored_json), json.loads(wanted_json)
    for spec in (stored, wanted):
        if isinstance(spec.get("weights"), dict) and spec["weights"].get("kind") == "file":
            spec["weights"].pop("path", None)
    return spec_differences(json.dumps(stored), json.dumps(wanted))


def continuation_problems(config: FederationConfig, data: DataSpec) -> list[str]:
    """What differs between ``config`` (a simulation) and the registry it would continue;
    empty when there is no registry yet or nothing differs."""
    if not (config.registry_path / DB_FILENAME).is_file():
        return []
    with Registry.open(config.registry_path, actor="cli") as registry:
        settings = registry.settings
    problems: list[str] = []
    if settings.data is not None and settings.data != data:
        problems.append(
            f"classes {list(settings.data.classes)[:10]} / inputs "
            f"{settings.data.input.describe()} vs {list(data.classes)[:10]} / "
            f"{data.input.describe()}"
        )
    if settings.partition is not None:
        problems += settings.partition.differences(simulated_partition(config))
    base = config.base_spec(data).canonical_json()
    problems += [f"base {d}" for d in _base_differences(settings.base.spec_json, base)]
    if settings.weighting != config.weighting:
        problems.append(f"weighting: {settings.weighting!r} vs {config.weighting!r}")
    if settings.max_norm != config.max_norm:
        problems.append(f"max-norm: {settings.max_norm!r} vs {config.max_norm!r}")
    if settings.privacy is not None:
        looser = shortfall(PrivacyFloor.of(config.privacy_config()), settings.privacy)
        problems += [f"privacy: {settings.privacy.describe()} required, {x}" for x in looser]
    return problems


def check_continuation(config: FederationConfig, data: DataSpec) -> None:
    """Raise RegistryMismatchError naming every difference (registry's value vs this run's)."""
    problems = continuation_problems(config, data)
    if problems:
        raise RegistryMismatchError(
            f"the registry at {config.registry_path} was made with other settings than this "
            f"run ({'; '.join(problems)}): rerun with the registry's settings, or use "
            "another registry folder"
        )


__all__ = ["check_continuation", "continuation_problems", "recorded_increments"]
