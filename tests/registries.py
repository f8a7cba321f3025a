"""A registry of the built-in digits base with a few random components (import as
``tests.registries``): what the model commands, the export and the loader are tested on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.helpers import random_delta
from tmc.common.components import Component, ComponentMeta, Delta
from tmc.common.data import DatasetSpec
from tmc.common.data.dataset_inputs import dataset_data_spec
from tmc.common.models import MaterializedBase
from tmc.server.registry import BaseRecord, Registry

CLASS_SPLIT = (("silo-0", (0, 1, 2)), ("silo-1", (3, 4, 5, 6)), ("silo-2", (7, 8, 9)))
"""Three silos holding disjoint classes, as a class split gives them."""


def add_components(
    registry: Registry,
    base: MaterializedBase,
    silos: Sequence[tuple[str, Sequence[int]]],
    *,
    round: int,
    seed: int = 0,
    scale: float = 0.05,
) -> None:
    """One random component per silo, trained "for" ``round``."""
    for index, (silo, classes) in enumerate(silos):
        delta = Delta(random_delta(base, seed=1000 * round + seed + index, scale=scale))
        meta = ComponentMeta(
            base_sha256=base.sha256,
            silo=silo,
            round=round,
            increment=round - 1,
            classes=tuple(classes),
            num_examples=20 + index,
        )
        registry.add(Component(delta, meta))


def digits_registry(
    root: Path,
    base: MaterializedBase,
    *,
    silos: Sequence[tuple[str, Sequence[int]]] = CLASS_SPLIT,
    rounds: int = 1,
    theta0: bool = True,
    data: bool = True,
) -> Path:
    """A registry at ``root`` with one component per silo per round, a version per round;
    ``theta0``/``data`` False make a registry like those created before they were stored."""
    with Registry.create(
        root,
        base=BaseRecord.from_materialized(base),
        theta0=base.theta0() if theta0 else None,
        data=dataset_data_spec(DatasetSpec(name="digits")) if data else None,
    ) as registry:
        for round in range(1, rounds + 1):
            add_components(registry, base, silos, round=round)
            registry.commit_version(round=round, reason=f"round {round}")
    return root
