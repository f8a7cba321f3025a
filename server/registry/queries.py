"""The reading half of the registry facade: listings, versions, what-if compositions,
exports and the audit log. :class:`~server.registry.registry.Registry` adds the lifecycle
and the operations that change the registry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch

from tmc.common.components import Component, Delta, Weighting
from tmc.common.errors import NotFoundError
from tmc.common.files import atomic_write_bytes, require_file_destination
from tmc.common.hashing import tensors_sha256
from tmc.server.registry.blobs import BlobStore, sha256_hex
from tmc.server.registry.entities import (
    AuditEvent,
    BaseRecord,
    ComponentRecord,
    ModelVersion,
    RegistrySettings,
    RegistryStatus,
    SiloSummary,
    StatusFilter,
)
from tmc.server.registry.errors import MissingBlobError, RegistryClosedError
from tmc.server.registry.exporting import AuditFormat, write_audit
from tmc.server.registry.model_file import exportable, model_bytes, require_data
from tmc.server.registry.store import MetadataStore
from tmc.server.registry.summing import Composer


class RegistryReader:
    """State shared by the facade, its locking, and every operation that only reads."""

    def __init__(self, root: Path, store: MetadataStore, settings: RegistrySettings) -> None:
        self.root = root
        self._store = store
        self._settings = settings
        self._schema = settings.base.schema()
        self._blobs = BlobStore(root, self._schema)
        self._composer = Composer(store, self._blobs, settings)
        # Serialises this instance's users; SQLite's lock serialises processes.
        self._lock = threading.RLock()
        self._closed = False

    @property
    def settings(self) -> RegistrySettings:
        return self._settings

    @property
    def base(self) -> BaseRecord:
        return self._settings.base

    @property
    def weighting(self) -> Weighting:
        return self._settings.weighting

    @property
    def store(self) -> MetadataStore:
        return self._store

    @property
    def blobs(self) -> BlobStore:
        return self._blobs

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The exclusive write transaction. Also taken by reads of several blobs, so that no
        commit's garbage collection deletes a blob between two of those reads."""
        with self._lock:
            self._check_open()
            with self._store.transaction():
                yield

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            with self._store.snapshot():
                yield

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosedError(f"the registry at {self.root} is closed")

    # -- components --------------------------------------------------------------------------

    def list_components(
        self, *, silo: str | None = None, status: StatusFilter = "active"
    ) -> list[ComponentRecord]:
        """Rows ordered by (silo, round, increment, id)."""
        with self._reading():
            return self._store.list_components(silo=silo, status=status)

    def component_record(self, component_id: str) -> ComponentRecord:
        """A component's row, active or forgotten."""
        with self._reading():
            record = self._store.get_component(component_id)
        if record is None:
            raise NotFoundError(f"no component {component_id} in the registry")
        return record

    def get_component(self, component_id: str) -> Component:
        """An active component's Δ and metadata, read back and verified against its hashes."""
        record = self.component_record(component_id)
        if record.status == "forgotten":
            raise NotFoundError(
                f"component {component_id[:12]}… was forgotten at {record.forgotten_at}"
            )
        try:
            return self._blobs.read_component(record.id, record.blob_sha256)
        except MissingBlobError:
            if self.component_record(component_id).status == "forgotten":  # just now
                raise NotFoundError(f"component {component_id[:12]}… was just forgotten") from None
            raise

    def theta0(self) -> dict[str, torch.Tensor]:
        """θ0 as stored in the registry, verified against the base's hash."""
        with self._reading():
            return self._blobs.read_theta0()

    def silos(self) -> list[SiloSummary]:
        with self._reading():
            return self._store.silo_summaries()

    # -- versions ----------------------------------------------------------------------------

    def current_version(self) -> ModelVersion | None:
        with self._reading():
            return self._store.latest_version()

    def versions(self) -> list[ModelVersion]:
        with self._reading():
            return self._store.list_versions()

    def version(self, number: int | None = None) -> ModelVersion:
        """A version by number, or the current one."""
        with self._reading():
            store = self._store
            found = store.latest_version() if number is None else store.get_version(number)
        if found is None:
            raise NotFoundError(
                "no version committed yet" if number is None else f"no version {number}"
            )
        return found

    def _live_version(self, number: int | None) -> ModelVersion:
        found = self.version(number)
        if found.purged:
            raise NotFoundError(
                f"version {found.number}'s Δ was deleted: it included components since forgotten"
            )
        return found

    def composed_delta(self, version: int | None = None) -> Delta:
        """A version's composed Δ (the current one by default), verified."""
        found = self._live_version(version)
        return self._blobs.read_version_delta(found.blob_sha256, found.delta_sha256)

    def version_bytes(self, version: int | None = None) -> bytes:
        """A version's stored file (the export format), verified against its hash."""
        return self._blobs.read_version(self._live_version(version).blob_sha256)

    # -- what-if compositions and exports ----------------------------------------------------

    def compose(
        self, *, exclude_silos: Iterable[str] = (), weighting: Weighting | None = None
    ) -> Delta:
        """The composition of the active components without ``exclude_silos`` (nothing is
        changed). With the registry's weighting it costs the excluded and uncommitted
        components only; another weighting recomposes from scratch."""
        with self._writing():
            delta, _ = self._composer.composition(exclude_silos, weighting)
        return delta

    def export_bytes(self, *, exclude_silos: Iterable[str] = (), actor: str = "admin") -> bytes:
        """The composed Δ of the active components (minus ``exclude_silos``) as safetensors,
        a function of the set of components only: byte-identical however it was reached."""
        return self._export(exclude_silos, actor, destination=None)

    def export(
        self, path: Path | str, *, exclude_silos: Iterable[str] = (), actor: str = "admin"
    ) -> str:
        """Write :meth:`export_bytes` to ``path`` atomically (0o600); returns its sha256."""
        path = require_file_destination(Path(path), "export destination")
        data = self._export(exclude_silos, actor, destination=str(path))
        atomic_write_bytes(path, data, mode=0o600)
        return sha256_hex(data)

    def _export(self, exclude_silos: Iterable[str], actor: str, destination: str | None) -> bytes:
        excluded = sorted(set(exclude_silos))
        with self._writing():
            delta, ids = self._composer.composition(excluded, None)
            data = self._composer.composition_bytes(delta, ids)
            self._store.audit(
                actor,
                "export",
                details={"exclude_silos": excluded, "count": len(ids), "path": destination},
                hashes={"export": sha256_hex(data), "delta": tensors_sha256(delta)},
            )
        return data

    def export_model_bytes(self, version: int | None = None, *, actor: str = "admin") -> bytes:
        """The full model of a version (the current one by default): θ0, its composed Δ and
        metadata in one safetensors file (``model_file``) that the standalone loader runs.
        Byte-identical for the same version; audited as an export."""
        return self._export_model(version, actor, destination=None)

    def export_model(
        self, path: Path | str, version: int | None = None, *, actor: str = "admin"
    ) -> str:
        """Write :meth:`export_model_bytes` to ``path`` atomically (0o600); returns its sha256."""
        path = require_file_destination(Path(path), "export destination")
        data = self._export_model(version, actor, destination=str(path))
        atomic_write_bytes(path, data, mode=0o600)
        return sha256_hex(data)

    def _export_model(self, version: int | None, actor: str, destination: str | None) -> bytes:
        data_spec = require_data(self._settings.data, self.root)
        with self._writing():
            chosen = exportable(self.version(version))
            theta0 = self._blobs.read_theta0()
            delta = self._blobs.read_version_delta(chosen.blob_sha256, chosen.delta_sha256)
            data = model_bytes(
                theta0, delta, base=self._settings.base, data=data_spec, version=chosen
            )
            self._store.audit(
                actor,
                "export",
                details={
                    "kind": "model",
                    "version": chosen.number,
                    "count": chosen.count,
                    "path": destination,
                },
                hashes={
                    "export": sha256_hex(data),
                    "delta": chosen.delta_sha256,
                    "base": self._settings.base.sha256,
                },
            )
        return data

    # -- status and audit --------------------------------------------------------------------

    def status(self) -> RegistryStatus:
        with self._reading():
            counts = self._store.count_components()
            versions = self._store.list_versions()
            silos = self._store.silo_summaries()
            events = self._store.count_audit()
        settings = self._settings
        tombstoned = len([t for t in self._store.list_tombstones() if t.active])
        return RegistryStatus(
            root=str(self.root),
            store=self._store.kind,
            schema_version=settings.schema_version,
            base_sha256=settings.base.sha256,
            weighting=settings.weighting,
            max_norm=settings.max_norm,
            active=counts["active"],
            forgotten=counts["forgotten"],
            pending=counts["pending"],
            silos=sum(1 for s in silos if s.active),
            current_version=versions[-1].number if versions else None,
            versions=len(versions),
            audit_events=events,
            created_at=settings.created_at,
            tombstoned=tombstoned,
        )

    def audit_log(self, since: int | datetime | None = None) -> list[AuditEvent]:
        """Events in order; ``since``: after this sequence number, or from this time."""
        with self._reading():
            if isinstance(since, datetime):
                at = since if since.tzinfo else since.astimezone()
                return self._store.list_audit(since=at)
            return self._store.list_audit(after_seq=since)

    def export_audit(self, path: Path | str, format: AuditFormat = "json") -> int:
        """Write the audit log (who, what, when, which hashes) as JSON or CSV, atomically
        and owner-readable only; returns the number of events written."""
        events = self.audit_log()
        write_audit(events, Path(path), format)
        return len(events)
