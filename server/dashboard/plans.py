"""What a forget or a readmission will do, worked out before it is done.

The confirmation page shows a :class:`ForgetPlan`; its ``digest`` travels in the form, and
the forget runs only if the plan worked out again at submission has the same digest. So
the operator confirms exactly what is removed: if a round committed or another forget ran
in between, the request is refused and the page shows the new plan.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import Field

from tmc.common.errors import NotFoundError
from tmc.common.schema import StrictModel
from tmc.server.dashboard.errors import PlanChangedError
from tmc.server.registry import (
    ComponentRecord,
    ForgetResult,
    Registry,
    SiloTombstone,
)


class ForgetPlan(StrictModel):
    silo: str
    removed: tuple[ComponentRecord, ...] = Field(description="its active components")
    current_version: int | None
    resulting_version: int | None = Field(description="None: no new version is committed")
    remaining: tuple[str, ...] = Field(description="component ids the resulting version holds")
    tombstones: bool = Field(description="the silo is not tombstoned yet: this forget does it")
    digest: str

    @property
    def increments(self) -> tuple[int, ...]:
        return tuple(sorted({r.increment for r in self.removed}))


class ReadmitPlan(StrictModel):
    silo: str
    tombstone: SiloTombstone
    current_version: int | None


def _known(registry: Registry, silo: str) -> None:
    if silo not in {s.silo for s in registry.silos()}:
        raise NotFoundError(f"the registry knows no silo {silo!r}")


def forget_plan(registry: Registry, silo: str) -> ForgetPlan:
    """What ``Registry.forget(silo=...)`` would remove now, and the version it would leave."""
    _known(registry, silo)
    active = registry.list_components(status="active")
    removed = tuple(c for c in active if c.silo == silo)
    remaining = tuple(sorted(c.id for c in active if c.silo != silo))
    current = registry.current_version()
    number = current.number if current is not None else None
    resulting = (number or 0) + 1 if removed else number
    tombstones = registry.tombstone(silo) is None
    body = {
        "silo": silo,
        "removed": sorted(c.id for c in removed),
        "remaining": list(remaining),
        "current_version": number,
        "tombstones": tombstones,
    }
    return ForgetPlan(
        silo=silo,
        removed=removed,
        current_version=number,
        resulting_version=resulting,
        remaining=remaining,
        tombstones=tombstones,
        digest=hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(),
    )


def carry_out_forget(
    registry: Registry, silo: str, *, digest: str, actor: str, reason: str
) -> ForgetResult:
    """Forget ``silo`` (audited, as ``tmc forget --silo`` does) if the plan the operator
    confirmed still holds: PlanChangedError if it changed before the request, and the
    registry's ForgetChangedError if the components to remove changed during it; nothing is
    changed in either case."""
    plan = forget_plan(registry, silo)
    if plan.digest != digest:
        raise PlanChangedError(
            f"what forgetting {silo!r} removes changed since the confirmation page was shown "
            "(a round or another forget committed): review the new list; nothing was changed"
        )
    return registry.forget(
        silo=silo, actor=actor, reason=reason, expected=[c.id for c in plan.removed]
    )


def readmit_plan(registry: Registry, silo: str) -> ReadmitPlan:
    """The tombstone a readmission lifts; NotFoundError if ``silo`` is not forgotten."""
    _known(registry, silo)
    tombstone = registry.tombstone(silo)
    if tombstone is None:
        raise NotFoundError(f"silo {silo!r} is not forgotten, so there is nothing to readmit")
    current = registry.current_version()
    return ReadmitPlan(
        silo=silo,
        tombstone=tombstone,
        current_version=current.number if current is not None else None,
    )
