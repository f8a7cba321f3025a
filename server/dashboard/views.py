"""What the pages show, read from the registry, the round history and the silo values kept
in the registry folder: no number here is computed that they do not record."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from tmc.common.errors import NotFoundError
from tmc.common.schema import StrictModel
from tmc.server.federation import RoundSummary
from tmc.server.registry import ComponentRecord, Registry, SiloSummary, SiloTombstone
from tmc.server.valuation import kept_valuations


class LastRound(StrictModel):
    """What one silo did in the last round recorded in the history."""

    round: int
    finished_at: datetime
    state: str = Field(description="contributed, idle, refused or not asked")
    detail: str = ""


class SiloRow(StrictModel):
    silo: str
    active: int
    forgotten: int
    num_examples: int
    increments: tuple[int, ...] = Field(description="increments of its active components")
    last_contribution: datetime | None
    tombstone: SiloTombstone | None
    epsilon: float | None = Field(None, description="largest ε among its active components")
    delta: float | None = Field(None, description="the δ that goes with that ε")
    last_round: LastRound | None


def last_round_of(silo: str, summary: RoundSummary) -> LastRound:
    """A silo's part in a round, as the round's summary records it."""
    refusals = [r.reason for r in summary.rejected if r.silo == silo]
    if silo in summary.accepted_silos:
        state, detail = "contributed", ""
    elif refusals:
        state, detail = "refused", "; ".join(refusals)
    elif silo in summary.idle:
        state, detail = "idle", "no new data"
    elif silo in summary.silos_asked:
        state, detail = "asked", "no reply recorded"
    else:
        state, detail = "not asked", "not connected in that round"
    return LastRound(
        round=summary.round, finished_at=summary.finished_at, state=state, detail=detail
    )


def silo_rows(registry: Registry, history: list[RoundSummary]) -> list[SiloRow]:
    """One row per silo the registry knows (it holds components or a tombstone)."""
    components = registry.list_components(status="active")
    tombstones = {t.silo: t for t in registry.tombstones()}
    last = history[-1] if history else None
    rows = []
    for summary in registry.silos():
        mine = [c for c in components if c.silo == summary.silo]
        private = [c for c in mine if c.privacy is not None]
        worst = max(private, key=lambda c: c.privacy.epsilon if c.privacy else 0.0, default=None)
        rows.append(
            SiloRow(
                silo=summary.silo,
                active=summary.active,
                forgotten=summary.forgotten,
                num_examples=summary.num_examples,
                increments=tuple(sorted({c.increment for c in mine})),
                last_contribution=summary.last_added_at,
                tombstone=tombstones.get(summary.silo),
                epsilon=worst.privacy.epsilon if worst and worst.privacy else None,
                delta=worst.privacy.delta if worst and worst.privacy else None,
                last_round=last_round_of(summary.silo, last) if last else None,
            )
        )
    return rows


class SiloValueRow(StrictModel):
    """One silo's values in one kept valuation (one version, one split)."""

    version: int
    split: str = Field(description="the first hex digits of the split's sha256")
    num_examples: int
    method: str
    leave_one_out: float
    shapley: float
    shapley_se: float
    accuracy: float = Field(description="the version's accuracy on that split")
    theta0_accuracy: float
    computed_at: datetime


def silo_summary(registry: Registry, silo: str) -> SiloSummary:
    """The registry's summary of ``silo`` (NotFoundError when it never contributed)."""
    found = next((s for s in registry.silos() if s.silo == silo), None)
    if found is None:
        raise NotFoundError(f"silo {silo!r} has no component in this registry")
    return found


def silo_values(registry: Registry, silo: str) -> list[SiloValueRow]:
    """``silo``'s values at every version a valuation was kept for, oldest first."""
    rows = []
    for valuation in kept_valuations(registry.root, silo=silo):
        mine = next(s for s in valuation.silos if s.silo == silo)
        rows.append(
            SiloValueRow(
                version=valuation.version,
                split=valuation.split_sha256[:12],
                num_examples=valuation.num_examples,
                method=valuation.method,
                leave_one_out=mine.leave_one_out,
                shapley=mine.shapley,
                shapley_se=mine.shapley_se,
                accuracy=valuation.accuracy,
                theta0_accuracy=valuation.theta0_accuracy,
                computed_at=valuation.computed_at,
            )
        )
    return rows


def version_silos(registry: Registry, component_ids: tuple[str, ...]) -> list[ComponentRecord]:
    """The records of a version's components (forgotten ones included), in listing order."""
    wanted = set(component_ids)
    return [c for c in registry.list_components(status="all") if c.id in wanted]
