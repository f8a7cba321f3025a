"""The registry facade: what the ServerApp, the CLI and the admin API use.

Components arrive one by one and are committed as they arrive (a crash later keeps them).
A *version* is the composition of every active component, built from the exact running sum
(see ``summing.py``), so its cost does not grow with the number of components.

Write protocol (one writer at a time, across threads and processes): take the metadata
transaction, write new blobs, write rows and audit events, commit; only then delete the
blobs the commit made garbage, in a second short transaction. A crash at any point leaves
the metadata consistent and, at worst, garbage files that ``recover()`` (run by ``open``)
deletes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType

import torch
from pydantic import ValidationError

from tmc.common.components import (
    Component,
    Weighting,
    component_to_bytes,
    validate_component,
)
from tmc.common.data.inputs import DataSpec
from tmc.common.errors import (
    ConfigError,
    IntegrityError,
    NotFoundError,
    RegistryError,
)
from tmc.server.registry.admission import AdmissionMixin
from tmc.server.registry.blobs import ensure_private_dir
from tmc.server.registry.entities import (
    AuditEvent,
    BaseRecord,
    ComponentRecord,
    ForgetResult,
    ModelVersion,
    RegistrySettings,
    StoreKind,
    VerifyReport,
    utc_now,
)
from tmc.server.registry.errors import (
    DuplicateContributionError,
    ForgetChangedError,
    ForgottenComponentError,
    ForgottenSiloError,
    PrivacyFloorError,
    RegistryExistsError,
    RegistryIncompleteError,
)
from tmc.server.registry.maintenance import run_recover, run_verify
from tmc.server.registry.memory import MemoryMetadataStore
from tmc.server.registry.privacy import PrivacyFloor, privacy_refusal
from tmc.server.registry.sqlite import DB_FILENAME, SQLiteMetadataStore
from tmc.server.registry.store import MetadataStore
from tmc.server.registry.summing import Garbage

_log = logging.getLogger(__name__)
_LAYOUT = (DB_FILENAME, "blobs", "sums", "versions")


class Registry(AdmissionMixin):
    """Components, versions and the audit log of one federation (one base θ0).

    Use :meth:`create`, :meth:`open` or :meth:`open_or_create`; close it (or use it as a
    context manager) when done. Safe to share between threads; several processes may open
    the same SQLite registry.
    """

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path | str,
        *,
        base: BaseRecord,
        weighting: Weighting = "uniform",
        max_norm: float | None = None,
        store: StoreKind = "sqlite",
        actor: str = "server",
        busy_timeout_s: float = 60.0,
        theta0: Mapping[str, torch.Tensor] | None = None,
        data: DataSpec | None = None,
        privacy: PrivacyFloor | None = None,
    ) -> Registry:
        """A new, empty registry at ``root`` (created owner-only). ``theta0`` (the base's
        tensors, checked against its hash) is stored with it, so that the registry alone
        rebuilds the model; ``data`` is the federation's label space and input spec;
        ``privacy`` what every component must state, for good."""
        root = Path(root)
        present = [name for name in _LAYOUT if (root / name).exists()]
        if present:
            raise RegistryExistsError(f"{root} already holds a registry ({', '.join(present)})")
        try:
            settings = RegistrySettings(
                base=base, weighting=weighting, max_norm=max_norm, data=data, privacy=privacy
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid registry settings: {exc}") from exc
        ensure_private_dir(root)
        if store == "sqlite":
            try:
                metadata: MetadataStore = SQLiteMetadataStore(
                    root / DB_FILENAME, create=True, busy_timeout_s=busy_timeout_s
                )
            except FileExistsError as exc:
                raise RegistryExistsError(f"{root} already holds a registry") from exc
        elif store == "memory":
            metadata = MemoryMetadataStore()
        else:
            raise ConfigError(f"unknown registry store {store!r}: use sqlite or memory")
        registry = cls(root, metadata, settings)
        registry._blobs.ensure_dirs()
        with metadata.transaction():
            if theta0 is not None:
                registry._blobs.write_theta0(theta0)
            metadata.put_settings(settings)
            metadata.audit(
                actor,
                "create",
                details={
                    "weighting": weighting,
                    "max_norm": max_norm,
                    "store": store,
                    "theta0_stored": theta0 is not None,
                    "classes": list(data.classes) if data is not None else None,
                    "input": data.input.model_dump(mode="json") if data is not None else None,
                    "privacy": privacy.model_dump(mode="json") if privacy is not None else None,
                },
                hashes={"base": base.sha256},
            )
        return registry

    @classmethod
    def open(
        cls, root: Path | str, *, actor: str = "server", busy_timeout_s: float = 60.0
    ) -> Registry:
        """Open an existing (SQLite) registry and clean up after any crash."""
        root = Path(root)
        if not (root / DB_FILENAME).is_file():
            raise NotFoundError(f"no registry at {root} (no {DB_FILENAME})")
        metadata = SQLiteMetadataStore(root / DB_FILENAME, busy_timeout_s=busy_timeout_s)
        settings = metadata.get_settings()
        if settings is None:
            metadata.close()
            raise RegistryIncompleteError(
                f"the registry at {root} is incomplete: its creation was cut off"
            )
        registry = cls(root, metadata, settings)
        try:
            registry.recover(actor=actor)
        except BaseException:
            registry.close()
            raise
        return registry

    @classmethod
    def open_or_create(
        cls,
        root: Path | str,
        *,
        base: BaseRecord,
        weighting: Weighting = "uniform",
        max_norm: float | None = None,
        store: StoreKind = "sqlite",
        actor: str = "server",
        busy_timeout_s: float = 60.0,
        theta0: Mapping[str, torch.Tensor] | None = None,
        data: DataSpec | None = None,
        privacy: PrivacyFloor | None = None,
    ) -> Registry:
        """Open the registry at ``root`` if there is one (it must hold the same base,
        weighting, norm bound and data spec, and ``privacy`` must be at least as strict as
        the registry's), else create it. A memory registry is always
        new. An older registry that lacks θ0 or the data spec gets them (audited)."""
        root = Path(root)
        if store != "sqlite" or not (root / DB_FILENAME).exists():
            try:
                return cls.create(
                    root,
                    base=base,
                    weighting=weighting,
                    max_norm=max_norm,
                    store=store,
                    actor=actor,
                    busy_timeout_s=busy_timeout_s,
                    theta0=theta0,
                    data=data,
                    privacy=privacy,
                )
            except RegistryExistsError:
                if store != "sqlite" or not (root / DB_FILENAME).exists():
                    raise
                # Another process created it first: open theirs.
        registry = cls._open_when_ready(root, actor, busy_timeout_s)
        try:
            registry._check_matches(base, weighting, max_norm, data, privacy)
            registry._complete(theta0, data, actor)
        except BaseException:
            registry.close()
            raise
        return registry

    @classmethod
    def _open_when_ready(
        cls, root: Path, actor: str, busy_timeout_s: float, wait_s: float = 10.0
    ) -> Registry:
        # A concurrent create may still be writing the schema or the settings.
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return cls.open(root, actor=actor, busy_timeout_s=busy_timeout_s)
            except RegistryIncompleteError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- adding ------------------------------------------------------------------------------

    def add(
        self,
        component: Component,
        *,
        actor: str = "server",
        expected_silo: str | None = None,
        round: int | None = None,
    ) -> ComponentRecord:
        """Validate and store a component (committed at once). Idempotent for an id that is
        already active; a forgotten id is refused. Raises a ComponentError subclass, with
        nothing written, if the component does not fit this registry."""
        validate_component(
            component,
            self._schema,
            max_norm=self._settings.max_norm,
            expected_silo=expected_silo,
        )
        self._composer.check_composable(component)
        if reason := privacy_refusal(
            self._settings.privacy, component.meta.privacy, num_examples=component.meta.num_examples
        ):
            raise PrivacyFloorError(f"this registry's privacy floor refuses it: {reason}")
        data = component_to_bytes(component)  # outside the lock: CPU only
        with self._writing():
            buried = self._store.get_tombstone(component.meta.silo)
            if buried is not None and buried.active:
                raise ForgottenSiloError(
                    f"silo {component.meta.silo!r} was {buried.refusal()}; its components are "
                    "refused until the operator readmits it"
                )
            existing = self._store.get_component(component.id)
            if existing is not None and existing.status == "active":
                return existing
            meta = component.meta
            if existing is None and any(
                r.increment == meta.increment
                for r in self._store.list_components(silo=meta.silo, status="active")
            ):
                raise DuplicateContributionError(
                    f"silo {meta.silo!r} already has an active component for increment "
                    f"{meta.increment}; a silo contributes each increment once (forget that "
                    "component first to replace it)"
                )
            if existing is not None:
                raise ForgottenComponentError(
                    f"component {component.id[:12]}… of silo {existing.silo!r} was forgotten on "
                    f"request at {existing.forgotten_at}; it cannot be added again"
                )
            try:
                blob_sha = self._blobs.write_component(component.id, data)
                record = ComponentRecord.of(
                    component,
                    blob_sha256=blob_sha,
                    actor=actor,
                    received_round=round,
                    added_at=utc_now(),
                )
                self._store.insert_component(record)
                self._store.audit(
                    actor,
                    "add",
                    silo=record.silo,
                    component_id=record.id,
                    details={
                        "round": record.round,
                        "received_round": round,
                        "increment": record.increment,
                        "num_examples": record.num_examples,
                        "norm": record.norm,
                    },
                    hashes={"component": record.id, "blob": blob_sha, "base": self.base.sha256},
                )
            except BaseException:
                # No row refers to this blob (we hold the write lock): drop it with the rows.
                self._blobs.delete_component(component.id)
                raise
        return record

    def reject(
        self,
        *,
        silo: str,
        round: int | None,
        reason: str,
        actor: str = "server",
        component_id: str | None = None,
    ) -> AuditEvent:
        """Record that a silo's reply was refused (audit only; nothing else changes)."""
        with self._writing():
            return self._store.audit(
                actor,
                "reject",
                silo=silo[:256],
                component_id=component_id[:64] if component_id else None,
                details={"round": round, "reason": reason[:2000]},
            )

    # -- versions and forgetting -------------------------------------------------------------

    def commit_version(
        self, *, round: int | None = None, reason: str = "", actor: str = "server"
    ) -> ModelVersion:
        """Compose every active component into a new version. Returns the current version
        unchanged when no component was added since it."""
        with self._writing():
            current = self._store.latest_version()
            pending = self._store.list_components(status="active", in_sum=False)
            if not pending:
                if current is None:
                    raise RegistryError("nothing to commit: the registry holds no component")
                return current
            version, garbage = self._composer.commit(
                removed=[], pending=pending, round=round, reason=reason, actor=actor
            )
        self._collect(garbage)
        return version

    def forget(
        self,
        *,
        silo: str | None = None,
        component_id: str | None = None,
        actor: str,
        reason: str = "",
        expected: Collection[str] | None = None,
    ) -> ForgetResult:
        """Remove a silo's components (or one component) from the model: exactly, without
        retraining. The new version is bit-identical to composing the remaining components
        from scratch; the removed components' files are deleted, and so are the stored Δ of
        older versions that included them. Forgetting a silo also tombstones it: its later
        contributions are refused until :meth:`readmit`. Repeating a forget is a no-op.
        ``expected``: the ids the caller showed would be removed; if the forget would remove
        others, ForgetChangedError, with nothing changed (checked in the same transaction)."""
        if (silo is None) == (component_id is None):
            raise RegistryError("forget needs exactly one of silo or component_id")
        with self._writing():
            if silo is not None:
                if not self._store.has_silo(silo):
                    raise NotFoundError(f"no component of silo {silo!r} in the registry")
                targets = self._store.list_components(silo=silo, status="active")
            else:
                record = self._store.get_component(str(component_id))
                if record is None:
                    raise NotFoundError(f"no component {component_id} in the registry")
                targets = [record] if record.status == "active" else []
            if expected is not None and {r.id for r in targets} != set(expected):
                raise ForgetChangedError(
                    f"forgetting {silo or component_id} would now remove {len(targets)} "
                    f"component(s), not the {len(set(expected))} expected; nothing was changed"
                )
            if silo is not None:
                buried = self._store.get_tombstone(silo)
                if buried is None or not buried.active:
                    self._bury(silo, actor=actor, reason=reason)
            if not targets:
                current = self._store.latest_version()
                if current is None:
                    if silo is not None:  # tombstoned before any version existed
                        raise RegistryError(
                            f"silo {silo!r} is forgotten, but the registry has no version yet"
                        )
                    raise IntegrityError("forgotten components but no version: run verify")
                return ForgetResult(removed=(), version=current)
            for record in targets:
                self._store.audit(
                    actor,
                    "forget",
                    silo=record.silo,
                    component_id=record.id,
                    details={"reason": reason, "requested": "silo" if silo else "component"},
                    hashes={"component": record.id, "blob": record.blob_sha256},
                )
            pending = self._store.list_components(status="active", in_sum=False)
            what = f"silo {silo}" if silo is not None else f"component {component_id}"
            version, garbage = self._composer.commit(
                removed=targets,
                pending=pending,
                round=None,
                reason=reason or f"forget {what}",
                actor=actor,
            )
        self._collect(garbage)
        return ForgetResult(removed=tuple(sorted(r.id for r in targets)), version=version)

    def _collect(self, garbage: Garbage) -> None:
        """Delete what a commit made garbage. The commit stands whatever happens here: if
        the cleanup cannot run now, recover() (run by open) finishes it."""
        if not garbage:
            return
        try:
            with self._writing():
                self._composer.collect(garbage)
        except (RegistryError, OSError) as exc:
            _log.warning(
                "registry %s: cleanup after commit postponed to recover(): %s", self.root, exc
            )

    # -- maintenance -------------------------------------------------------------------------

    def verify(self, *, actor: str = "admin") -> VerifyReport:
        """Check every file against its hash, the running sum and the current version
        against a recomposition from scratch, and the audit chain (reads every blob)."""
        with self._writing():
            report = run_verify(self._store, self._blobs, self._settings)
            self._store.audit(
                actor,
                "verify",
                details={
                    "ok": report.ok,
                    "problems": report.problems[:20],
                    "garbage": len(report.garbage),
                },
            )
        return report

    def recover(self, *, actor: str = "server") -> list[str]:
        """Delete temp files and blobs the metadata does not account for (left by a crash);
        returns their paths relative to the root. Run by :meth:`open`."""
        with self._writing():
            removed = run_recover(self._store, self._blobs)
            if removed:
                self._store.audit(
                    actor, "recover", details={"removed": removed[:100], "count": len(removed)}
                )
        return removed
