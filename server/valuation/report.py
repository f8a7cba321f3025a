"""Valuing a registry version's silos, previewing a forget, and the values kept per version.

A valuation covers the components of one version (the current one by default), on one
labelled split; it is written to ``valuation/values/v<version>-<split>.json`` in the registry
folder, so a silo can see what its contribution was worth at each version (a forget or a new
round makes a new version, and the old values stay). Nothing here changes the registry.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import Field

from tmc.common.errors import ConfigError, NotFoundError
from tmc.common.files import atomic_write_bytes
from tmc.common.schema import StrictModel
from tmc.server.registry import Registry
from tmc.server.registry.entities import ComponentRecord, utc_now
from tmc.server.valuation.games import (
    CompositionGame,
    leave_one_out,
    players_from,
    shapley,
)
from tmc.server.valuation.logits import CACHE_DIR, ComponentLogits, SplitTensors

VALUES_DIR = "values"


class SiloValue(StrictModel):
    silo: str
    components: int = Field(ge=1)
    leave_one_out: float = Field(description="accuracy with the silo minus without it")
    shapley: float = Field(description="the silo's Shapley value (accuracy points)")
    shapley_se: float = Field(ge=0, description="standard error (0 when exact)")


class Valuation(StrictModel):
    """What each silo of one version is worth on one split."""

    version: int = Field(ge=1)
    split_sha256: str
    num_examples: int = Field(ge=1)
    theta0_accuracy: float
    accuracy: float = Field(description="the version's accuracy: u(all silos)")
    method: str
    samples: int = Field(ge=0)
    seed: int
    forward_passes: int = Field(ge=0, description="components not yet in the logit cache")
    silos: list[SiloValue]
    computed_at: datetime = Field(default_factory=utc_now)


class ForgetPreview(StrictModel):
    """The model after forgetting a silo, before anything is removed."""

    silo: str
    version: int
    removed: list[str]
    accuracy_before: float
    accuracy_after: float
    per_class_before: dict[str, float]
    per_class_after: dict[str, float]


def _weight(record: ComponentRecord, weighting: str) -> float:
    return 1.0 if weighting == "uniform" else float(record.num_examples)


def _game(
    registry: Registry, split: SplitTensors, version: int | None
) -> tuple[CompositionGame, int, ComponentLogits]:
    chosen = registry.version(version)
    if chosen.purged:
        raise NotFoundError(
            f"version {chosen.number} held a forgotten silo's components and was purged"
        )
    logits = ComponentLogits(registry, split)
    records = {r.id: r for r in registry.list_components(status="all")}
    ids = list(chosen.component_ids)
    tangents = logits.tangents(ids)
    players = players_from(
        tangents,
        {c: records[c].silo for c in ids},
        {c: _weight(records[c], chosen.weighting) for c in ids},
    )
    return CompositionGame(logits.theta0(), logits.labels, players), chosen.number, logits


def value_version(
    registry: Registry,
    split: SplitTensors,
    *,
    version: int | None = None,
    samples: int = 200,
    seed: int = 0,
) -> Valuation:
    """Leave-one-out and Shapley values of each silo of ``version``; kept in the registry."""
    game, number, logits = _game(registry, split, version)
    result = shapley(game, samples=samples, seed=seed)
    loo = leave_one_out(game)
    counts: dict[str, int] = {}
    for component_id in registry.version(number).component_ids:
        silo = registry.component_record(component_id).silo
        counts[silo] = counts.get(silo, 0) + 1
    everyone = list(range(len(game.players)))
    valuation = Valuation(
        version=number,
        split_sha256=logits.split_sha256,
        num_examples=len(game.labels),
        theta0_accuracy=game.utility([]),
        accuracy=game.utility(everyone),
        method=result.method,
        samples=result.samples,
        seed=seed,
        forward_passes=logits.computed,
        silos=[
            SiloValue(
                silo=name,
                components=counts[name],
                leave_one_out=loo[name],
                shapley=result.values[k],
                shapley_se=result.standard_errors[k],
            )
            for k, name in enumerate(game.names)
        ],
    )
    _keep(registry.root, valuation)
    return valuation


def preview_forget(
    registry: Registry, split: SplitTensors, silo: str, *, class_names: tuple[str, ...]
) -> ForgetPreview:
    """Accuracy and per-class accuracy of the current version with and without ``silo``."""
    game, number, _ = _game(registry, split, None)
    if silo not in game.names:
        raise NotFoundError(f"silo {silo!r} has no component in version {number}")
    everyone = list(range(len(game.players)))
    without = [k for k in everyone if game.names[k] != silo]
    removed = [
        c
        for c in registry.version(number).component_ids
        if registry.component_record(c).silo == silo
    ]

    def named(scores: dict[int, float]) -> dict[str, float]:
        return {class_names[c]: a for c, a in scores.items()}

    return ForgetPreview(
        silo=silo,
        version=number,
        removed=removed,
        accuracy_before=game.utility(everyone),
        accuracy_after=game.utility(without),
        per_class_before=named(game.per_class(everyone)),
        per_class_after=named(game.per_class(without)),
    )


def _values_dir(root: Path) -> Path:
    return root / CACHE_DIR / VALUES_DIR


def _keep(root: Path, valuation: Valuation) -> None:
    folder = _values_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"v{valuation.version}-{valuation.split_sha256[:16]}.json"
    atomic_write_bytes(path, valuation.model_dump_json(indent=2).encode())


def kept_valuations(root: Path, *, silo: str | None = None) -> list[Valuation]:
    """Every valuation kept in the registry folder, by version (and split); with ``silo``,
    only those in which that silo had components."""
    folder = _values_dir(root)
    found = []
    for path in sorted(folder.glob("v*.json")) if folder.is_dir() else []:
        try:
            valuation = Valuation.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not a valuation record: {exc}") from exc
        if silo is None or any(s.silo == silo for s in valuation.silos):
            found.append(valuation)
    return sorted(found, key=lambda v: (v.version, v.split_sha256))


__all__ = [
    "ForgetPreview",
    "SiloValue",
    "Valuation",
    "kept_valuations",
    "preview_forget",
    "value_version",
]
