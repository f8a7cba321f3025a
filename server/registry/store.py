"""The metadata store interface: rows of components, versions, the running-sum pointer and
the audit log, behind transactions.

Two backends implement it (``sqlite.py`` for real registries, ``memory.py`` for tests and
benchmarks); one test suite runs against both. Every write must happen inside
``transaction()``, which is exclusive (one writer, across processes for SQLite) and
all-or-nothing. The registry also writes and deletes blobs while it holds the transaction,
so crash recovery never races a writer that is between "blob written" and "row inserted".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from tmc.common.errors import RegistryError
from tmc.server.registry.entities import (
    GENESIS_CHAIN,
    AuditAction,
    AuditDraft,
    AuditEvent,
    ComponentRecord,
    ModelVersion,
    RegistrySettings,
    SiloSummary,
    SiloTombstone,
    StatusFilter,
    StoreKind,
    SumPointer,
)


class MetadataStore(ABC):
    """Rows ↔ entities, transactions, and nothing else (no tensors, no files)."""

    kind: StoreKind

    # -- lifecycle and transactions ----------------------------------------------------------

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Exclusive write transaction; commits on normal exit, rolls back on an exception.
        Re-entrant: a nested call joins the outer transaction."""

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """Consistent read view for several queries (joins an open transaction)."""

    @property
    @abstractmethod
    def in_transaction(self) -> bool:
        """Whether the calling code holds the write transaction."""

    @abstractmethod
    def close(self) -> None: ...

    def _require_transaction(self) -> None:
        if not self.in_transaction:
            raise RegistryError("internal error: registry writes must run inside transaction()")

    # -- settings ----------------------------------------------------------------------------

    @abstractmethod
    def get_settings(self) -> RegistrySettings | None: ...

    @abstractmethod
    def put_settings(self, settings: RegistrySettings) -> None: ...

    # -- components --------------------------------------------------------------------------

    @abstractmethod
    def insert_component(self, record: ComponentRecord) -> None: ...

    @abstractmethod
    def get_component(self, component_id: str) -> ComponentRecord | None: ...

    @abstractmethod
    def list_components(
        self,
        *,
        silo: str | None = None,
        status: StatusFilter = "active",
        in_sum: bool | None = None,
    ) -> list[ComponentRecord]:
        """Rows ordered by (silo, round, increment, id): independent of arrival order."""

    @abstractmethod
    def count_components(self) -> dict[str, int]:
        """``{"active": …, "forgotten": …, "pending": …}`` (pending: active, not in the sum)."""

    @abstractmethod
    def mark_forgotten(self, component_ids: Iterable[str], at: datetime) -> None:
        """Status → forgotten, out of the running sum."""

    @abstractmethod
    def mark_in_sum(self, component_ids: Iterable[str]) -> None: ...

    @abstractmethod
    def has_silo(self, silo: str) -> bool:
        """Whether any component (active or forgotten) ever came from ``silo``."""

    # -- tombstones (silos forgotten on request) -----------------------------------------------

    @abstractmethod
    def get_tombstone(self, silo: str) -> SiloTombstone | None:
        """The silo's tombstone, lifted or not; None if it was never forgotten as a silo."""

    @abstractmethod
    def put_tombstone(self, tombstone: SiloTombstone) -> None:
        """Insert or replace the silo's tombstone (inside the caller's transaction)."""

    @abstractmethod
    def list_tombstones(self) -> list[SiloTombstone]:
        """Every tombstone, lifted or not, ordered by silo."""

    # -- versions ----------------------------------------------------------------------------

    @abstractmethod
    def insert_version(self, version: ModelVersion) -> None: ...

    @abstractmethod
    def get_version(self, number: int) -> ModelVersion | None: ...

    @abstractmethod
    def latest_version(self) -> ModelVersion | None: ...

    @abstractmethod
    def list_versions(self) -> list[ModelVersion]: ...

    @abstractmethod
    def unpurged_versions_containing(self, component_ids: Iterable[str]) -> list[int]:
        """Numbers of versions whose Δ still exists and includes any of these components."""

    @abstractmethod
    def mark_purged(self, numbers: Iterable[int]) -> None: ...

    @abstractmethod
    def referenced_version_blobs(self) -> set[str]:
        """blob_sha256 of every version whose Δ must still exist (not purged)."""

    # -- the running-sum pointer -------------------------------------------------------------

    @abstractmethod
    def get_sum_pointer(self) -> SumPointer | None: ...

    @abstractmethod
    def set_sum_pointer(self, pointer: SumPointer) -> None: ...

    # -- audit -------------------------------------------------------------------------------

    @abstractmethod
    def _insert_audit(self, event: AuditEvent) -> None: ...

    @abstractmethod
    def last_audit(self) -> AuditEvent | None: ...

    @abstractmethod
    def list_audit(
        self, *, after_seq: int | None = None, since: datetime | None = None
    ) -> list[AuditEvent]:
        """Events in sequence order, optionally after a sequence number or from a time."""

    @abstractmethod
    def count_audit(self) -> int: ...

    def integrity_problems(self, settings: RegistrySettings) -> list[str]:
        """What ``verify`` finds wrong beyond the rows: a backend's own safeguards (the
        SQLite store's audit anchor and triggers; the in-memory store has none)."""
        return []

    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        """Number and chain the event and append it (inside the caller's transaction)."""
        self._require_transaction()
        last = self.last_audit()
        event = AuditEvent.chained(
            draft,
            seq=1 if last is None else last.seq + 1,
            previous_chain=GENESIS_CHAIN if last is None else last.chain_sha256,
        )
        self._insert_audit(event)
        return event

    def audit(
        self,
        actor: str,
        action: AuditAction,
        *,
        silo: str | None = None,
        component_id: str | None = None,
        details: dict[str, Any] | None = None,
        hashes: dict[str, str] | None = None,
    ) -> AuditEvent:
        """Shorthand for :meth:`append_audit`."""
        draft = AuditDraft(
            actor=actor,
            action=action,
            silo=silo,
            component_id=component_id,
            details=details or {},
            hashes=hashes or {},
        )
        return self.append_audit(draft)

    # -- derived queries (same for every backend) --------------------------------------------

    def silo_summaries(self) -> list[SiloSummary]:
        rows: dict[str, list[ComponentRecord]] = {}
        for record in self.list_components(status="all"):
            rows.setdefault(record.silo, []).append(record)
        tombstones = {t.silo: t for t in self.list_tombstones() if t.active}
        return [
            _summarise(silo, rows.get(silo, []), tombstones.get(silo))
            for silo in sorted(set(rows) | set(tombstones))
        ]


def _summarise(
    silo: str, records: list[ComponentRecord], tombstone: SiloTombstone | None
) -> SiloSummary:
    active = [r for r in records if r.status == "active"]
    return SiloSummary(
        silo=silo,
        active=len(active),
        forgotten=len(records) - len(active),
        num_examples=sum(r.num_examples for r in active),
        classes=tuple(sorted({c for r in active for c in r.classes})),
        rounds=tuple(sorted({r.round for r in active})),
        last_added_at=max((r.added_at for r in active), default=None),
        forgotten_on=tombstone.forgotten_at if tombstone else None,
        forgotten_reason=tombstone.reason if tombstone else None,
    )


def sort_key(record: ComponentRecord) -> tuple[str, int, int, str]:
    """The listing order shared by the backends."""
    return (record.silo, record.round, record.increment, record.id)


def matches(
    record: ComponentRecord, silo: str | None, status: StatusFilter, in_sum: bool | None
) -> bool:
    return (
        (silo is None or record.silo == silo)
        and status in ("all", record.status)
        and (in_sum is None or record.in_sum == in_sum)
    )


def check_status(status: str) -> StatusFilter:
    if status not in ("active", "forgotten", "all"):
        raise RegistryError(f"unknown component status {status!r}: use active, forgotten or all")
    return status  # type: ignore[return-value]  # narrowed by the membership test above
