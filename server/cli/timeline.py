"""What ``tmc registry versions`` and ``tmc registry history`` show: a registry's versions
with their scores, and its rounds interleaved with forgets and readmissions.

The registry is authoritative (versions, audit log); ``history.jsonl`` adds what only the
rounds know (accuracy, refusals, timings) and is matched to versions by number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tmc.server.federation import RoundSummary
from tmc.server.registry import AuditEvent, ModelVersion, Registry


def silos_by_component(registry: Registry) -> dict[str, str]:
    """Component id → silo, forgotten components included (their rows stay)."""
    return {r.id: r.silo for r in registry.list_components(status="all")}


def version_accuracy(number: int, rounds: Sequence[RoundSummary]) -> float | None:
    """The server-side accuracy the last round that produced version ``number`` measured."""
    scores = [r.accuracy for r in rounds if r.version == number and r.accuracy is not None]
    return scores[-1] if scores else None


def version_rows(registry: Registry, rounds: Sequence[RoundSummary]) -> list[dict[str, Any]]:
    """Every version, oldest first: number, time, round, reason, actor, components, silos,
    weighting, purged, accuracy, and whether it is the current one."""
    silo_of = silos_by_component(registry)
    current = registry.current_version()
    return [
        {
            "number": v.number,
            "created_at": v.created_at.isoformat(),
            "round": v.round,
            "reason": v.reason,
            "actor": v.actor,
            "components": v.count,
            "silos": sorted({silo_of.get(i, "?") for i in v.component_ids}),
            "weighting": v.weighting,
            "purged": v.purged,
            "accuracy": version_accuracy(v.number, rounds),
            "current": current is not None and v.number == current.number,
            "delta_sha256": v.delta_sha256,
        }
        for v in registry.versions()
    ]


def model_events(audit: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    """Forgets and readmissions, oldest first. One forget request writes one audit event
    per removed component, then a ``version`` event: consecutive forget events of the same
    silo, actor and reason are one request, and the version after them is its result."""
    events: list[dict[str, Any]] = []
    open_forget: dict[str, Any] | None = None
    for event in audit:
        reason = str(event.details.get("reason", ""))
        if event.action == "forget":
            key = (event.silo, event.actor, reason)
            if open_forget is not None and open_forget["_key"] == key:
                open_forget["component_ids"].append(event.component_id)
                open_forget["components"] += 1
                continue
            open_forget = {
                "_key": key,
                "at": event.at,
                "action": "forget",
                "silo": event.silo,
                "actor": event.actor,
                "reason": reason,
                "components": 1,
                "component_ids": [event.component_id],
                "version": None,
            }
            events.append(open_forget)
            continue
        if event.action == "version" and open_forget is not None:
            number = event.details.get("number")
            open_forget["version"] = number if isinstance(number, int) else None
        if event.action == "readmit":
            events.append(
                {
                    "at": event.at,
                    "action": "readmit",
                    "silo": event.silo,
                    "actor": event.actor,
                    "reason": reason,
                }
            )
        open_forget = None
    for item in events:
        item.pop("_key", None)
    return events


def current_model(registry: Registry) -> dict[str, Any] | None:
    """The current version: number, components, silos (None before the first commit)."""
    current: ModelVersion | None = registry.current_version()
    if current is None:
        return None
    silo_of = silos_by_component(registry)
    return {
        "version": current.number,
        "components": current.count,
        "silos": sorted({silo_of.get(i, "?") for i in current.component_ids}),
        "created_at": current.created_at.isoformat(),
    }


def timeline(
    rounds: Sequence[RoundSummary], events: Sequence[dict[str, Any]]
) -> list[tuple[datetime, RoundSummary | dict[str, Any]]]:
    """Rounds (at their end) and events in time order."""
    items: list[tuple[datetime, RoundSummary | dict[str, Any]]] = [
        (r.finished_at, r) for r in rounds
    ]
    items.extend((e["at"], e) for e in events)
    return sorted(items, key=lambda item: item[0])


__all__ = [
    "current_model",
    "model_events",
    "silos_by_component",
    "timeline",
    "version_accuracy",
    "version_rows",
]
