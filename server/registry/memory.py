"""In-memory metadata store: the SQLite store's semantics without a file (tests, benchmarks).

Transactions keep an undo log rather than a copy of the state, so a transaction costs what
it changes, not what the registry holds (benchmarks of "cost independent of N" stay honest).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

from tmc.server.registry.entities import (
    AuditEvent,
    ComponentRecord,
    ModelVersion,
    RegistrySettings,
    SiloTombstone,
    StatusFilter,
    StoreKind,
    SumPointer,
)
from tmc.server.registry.errors import RegistryClosedError
from tmc.server.registry.store import MetadataStore, check_status, matches, sort_key

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class MemoryMetadataStore(MetadataStore):
    kind: StoreKind = "memory"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None
        self._undo: list[Callable[[], None]] = []
        self._closed = False
        self._settings: RegistrySettings | None = None
        self._components: dict[str, ComponentRecord] = {}
        self._versions: dict[int, ModelVersion] = {}
        self._members: dict[str, set[int]] = {}  # component id → versions that include it
        self._pointer: SumPointer | None = None
        self._audit: list[AuditEvent] = []
        self._tombstones: dict[str, SiloTombstone] = {}

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            self._depth += 1
            self._owner = threading.get_ident()
            try:
                yield
            except BaseException:
                if self._depth == 1:
                    for undo in reversed(self._undo):
                        undo()
                    self._undo.clear()
                raise
            else:
                if self._depth == 1:
                    self._undo.clear()
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            yield

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0 and self._owner == threading.get_ident()

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosedError("the registry's metadata store is closed")

    def _put(self, mapping: MutableMapping[K, V], key: K, value: V) -> None:
        self._require_transaction()
        old = mapping.get(key, _MISSING)

        def undo() -> None:
            if old is _MISSING:
                mapping.pop(key, None)
            else:
                mapping[key] = old  # type: ignore[assignment]  # old is a V here

        mapping[key] = value
        self._undo.append(undo)

    # -- settings ----------------------------------------------------------------------------

    def get_settings(self) -> RegistrySettings | None:
        with self._lock:
            return self._settings

    def put_settings(self, settings: RegistrySettings) -> None:
        with self._lock:
            self._require_transaction()
            old = self._settings
            self._settings = settings
            self._undo.append(lambda: setattr(self, "_settings", old))

    # -- components --------------------------------------------------------------------------

    def insert_component(self, record: ComponentRecord) -> None:
        with self._lock:
            if record.id in self._components:
                raise KeyError(f"component {record.id} already has a row")
            self._put(self._components, record.id, record)

    def get_component(self, component_id: str) -> ComponentRecord | None:
        with self._lock:
            return self._components.get(component_id)

    def list_components(
        self,
        *,
        silo: str | None = None,
        status: StatusFilter = "active",
        in_sum: bool | None = None,
    ) -> list[ComponentRecord]:
        status = check_status(status)
        with self._lock:
            rows = [r for r in self._components.values() if matches(r, silo, status, in_sum)]
        return sorted(rows, key=sort_key)

    def count_components(self) -> dict[str, int]:
        with self._lock:
            rows = list(self._components.values())
        active = [r for r in rows if r.status == "active"]
        return {
            "active": len(active),
            "forgotten": len(rows) - len(active),
            "pending": sum(not r.in_sum for r in active),
        }

    def mark_forgotten(self, component_ids: Iterable[str], at: datetime) -> None:
        with self._lock:
            for cid in component_ids:
                record = self._components[cid]
                update = {"status": "forgotten", "forgotten_at": at, "in_sum": False}
                self._put(self._components, cid, record.model_copy(update=update))

    def mark_in_sum(self, component_ids: Iterable[str]) -> None:
        with self._lock:
            for cid in component_ids:
                record = self._components[cid]
                self._put(self._components, cid, record.model_copy(update={"in_sum": True}))

    def has_silo(self, silo: str) -> bool:
        with self._lock:
            return any(r.silo == silo for r in self._components.values())

    # -- tombstones --------------------------------------------------------------------------

    def get_tombstone(self, silo: str) -> SiloTombstone | None:
        with self._lock:
            return self._tombstones.get(silo)

    def put_tombstone(self, tombstone: SiloTombstone) -> None:
        with self._lock:
            self._put(self._tombstones, tombstone.silo, tombstone)

    def list_tombstones(self) -> list[SiloTombstone]:
        with self._lock:
            return [self._tombstones[s] for s in sorted(self._tombstones)]

    # -- versions ----------------------------------------------------------------------------

    def insert_version(self, version: ModelVersion) -> None:
        with self._lock:
            if version.number in self._versions:
                raise KeyError(f"version {version.number} already exists")
            self._put(self._versions, version.number, version)
            for cid in version.component_ids:
                members = self._members.get(cid, set())
                self._put(self._members, cid, members | {version.number})

    def get_version(self, number: int) -> ModelVersion | None:
        with self._lock:
            return self._versions.get(number)

    def latest_version(self) -> ModelVersion | None:
        with self._lock:
            return self._versions[max(self._versions)] if self._versions else None

    def list_versions(self) -> list[ModelVersion]:
        with self._lock:
            return [self._versions[n] for n in sorted(self._versions)]

    def unpurged_versions_containing(self, component_ids: Iterable[str]) -> list[int]:
        with self._lock:
            numbers = {n for cid in component_ids for n in self._members.get(cid, ())}
            return sorted(n for n in numbers if not self._versions[n].purged)

    def mark_purged(self, numbers: Iterable[int]) -> None:
        with self._lock:
            for number in numbers:
                version = self._versions[number].model_copy(update={"purged": True})
                self._put(self._versions, number, version)

    def referenced_version_blobs(self) -> set[str]:
        with self._lock:
            return {v.blob_sha256 for v in self._versions.values() if not v.purged}

    # -- running sum -------------------------------------------------------------------------

    def get_sum_pointer(self) -> SumPointer | None:
        with self._lock:
            return self._pointer

    def set_sum_pointer(self, pointer: SumPointer) -> None:
        with self._lock:
            self._require_transaction()
            old = self._pointer
            self._pointer = pointer
            self._undo.append(lambda: setattr(self, "_pointer", old))

    # -- audit -------------------------------------------------------------------------------

    def _insert_audit(self, event: AuditEvent) -> None:
        with self._lock:
            self._require_transaction()
            self._audit.append(event)
            self._undo.append(self._drop_last_audit)

    def _drop_last_audit(self) -> None:
        self._audit.pop()

    def last_audit(self) -> AuditEvent | None:
        with self._lock:
            return self._audit[-1] if self._audit else None

    def list_audit(
        self, *, after_seq: int | None = None, since: datetime | None = None
    ) -> list[AuditEvent]:
        with self._lock:
            events = list(self._audit)
        return [
            e
            for e in events
            if (after_seq is None or e.seq > after_seq) and (since is None or e.at >= since)
        ]

    def count_audit(self) -> int:
        with self._lock:
            return len(self._audit)
