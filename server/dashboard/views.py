"""What the pages show, read from the registry and the round history: no number here is
computed that the registry or ``history.jsonl`` does not record."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from tmc.common.schema import StrictModel
from tmc.server.federation import RoundSummary
from tmc.server.registry import ComponentRecord, Registry, SiloTombstone


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


def version_silos(registry: Registry, component_ids: tuple[str, ...]) -> list[ComponentRecord]:
    """The records of a version's components (forgotten ones included), in listing order."""
    wanted = set(component_ids)
    return [c for c in registry.list_components(status="all") if c.id in wanted]
