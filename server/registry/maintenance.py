"""Checking a registry end to end (``verify``) and cleaning up after a crash (``recover``).

Both run inside the registry's write transaction, so no writer (in this process or
another) is between "blob written" and "row committed" while they look at the files.

The crash model: metadata is the truth. A row is committed or not; a blob without a row is
garbage; a forgotten component's blob, a running sum other than the current one and a
version Δ no live version refers to are garbage too (a crash between a commit and the
deletions that follow it leaves them behind).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tmc.common.components import Component, ExactSum, component_weight, validate_component
from tmc.common.errors import ComponentError, IntegrityError
from tmc.server.registry.anchor import clear_interrupted_writes
from tmc.server.registry.blobs import BlobStore, sha256_hex
from tmc.server.registry.entities import (
    GENESIS_CHAIN,
    AuditEvent,
    ComponentRecord,
    RegistrySettings,
    VerifyReport,
    chain_hash,
)
from tmc.server.registry.exporting import composition_bytes
from tmc.server.registry.store import MetadataStore


@dataclass
class _Findings:
    problems: list[str] = field(default_factory=list)
    garbage: list[str] = field(default_factory=list)


def _check_audit_chain(store: MetadataStore, found: _Findings) -> list[AuditEvent]:
    previous, events = GENESIS_CHAIN, store.list_audit()
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            found.problems.append(
                f"audit log: event {expected_seq} is missing (next is {event.seq})"
            )
            return events
        if chain_hash(previous, event) != event.chain_sha256:
            found.problems.append(
                f"audit log: event {event.seq} does not match its chain hash (edited or replaced)"
            )
            return events
        previous = event.chain_sha256
    return events


def _row_problems(record: ComponentRecord, component: Component, added: AuditEvent | None) -> str:
    """The fields of ``record`` that are not what its file and its ``add`` event say."""
    expected = ComponentRecord.of(
        component,
        blob_sha256=record.blob_sha256,
        actor=record.actor,
        received_round=record.received_round,
        added_at=record.added_at,
    ).model_copy(update={"status": record.status, "in_sum": record.in_sum, "forgotten_at": None})
    ours, theirs = record.model_dump(), expected.model_dump()
    if record.payload_bytes is None:
        ours.pop("payload_bytes")  # rows written before schema 2 did not record it
    # ‖Δ‖ is a float64 sum whose last bits follow the summing process's thread count
    # (torch splits reductions by thread): equal within rounding is equal.
    if math.isclose(ours["norm"], theirs["norm"], rel_tol=1e-9, abs_tol=1e-12):
        ours["norm"] = theirs["norm"]
    fields = [name for name in ours if ours[name] != theirs[name]]
    if added is None:
        fields.append("its add event is missing")
    else:
        if added.actor != record.actor:
            fields.append("actor")
        if added.details.get("received_round") != record.received_round:
            fields.append("received_round")
    return ", ".join(fields)


def _check_component(
    record: ComponentRecord,
    blobs: BlobStore,
    settings: RegistrySettings,
    scratch: ExactSum,
    found: _Findings,
    *,
    added: AuditEvent | None,
) -> bool:
    """Check one active component; add it to the from-scratch sum if the running sum has it."""
    try:
        component = blobs.read_component(record.id, record.blob_sha256)
        validate_component(component, settings.base.schema())
    except (IntegrityError, ComponentError) as exc:
        found.problems.append(f"component {record.id[:12]}… (silo {record.silo}): {exc}")
        return False
    if wrong := _row_problems(record, component, added):
        found.problems.append(
            f"component {record.id[:12]}… (silo {record.silo}): its row does not match its "
            f"file and its add event ({wrong})"
        )
        return False
    if record.in_sum:
        scratch.add(component.delta, component_weight(component, settings.weighting))
    return True


def run_verify(store: MetadataStore, blobs: BlobStore, settings: RegistrySettings) -> VerifyReport:
    found = _Findings()
    events = _check_audit_chain(store, found)
    stored = store.get_settings()
    if stored is None:
        found.problems.append("settings: the settings row is missing")
    else:
        found.problems.extend(store.integrity_problems(stored))
    added = {e.component_id: e for e in events if e.action == "add" and e.component_id}
    records = store.list_components(status="all")
    found.problems.extend(_duplicates(records))
    scratch = ExactSum(settings.base.shapes)
    readable, in_sum = True, set()
    for record in records:
        if record.status == "forgotten":
            if blobs.has_component(record.id):
                found.problems.append(
                    f"forgotten component {record.id[:12]}… (silo {record.silo}) still has its "
                    f"file {blobs.relative(blobs.component_path(record.id))}"
                )
            continue
        readable &= _check_component(
            record, blobs, settings, scratch, found, added=added.get(record.id)
        )
        if record.in_sum:
            in_sum.add(record.id)

    pointer = store.get_sum_pointer()
    if pointer is None and in_sum:
        found.problems.append(f"{len(in_sum)} components are marked summed but no sum exists")
    elif pointer is not None:
        try:
            persisted = blobs.read_sum(pointer.sha256)
        except IntegrityError as exc:
            found.problems.append(f"running sum: {exc}")
        else:
            if (persisted.count, persisted.total_weight) != (pointer.count, pointer.total_weight):
                found.problems.append("running sum: its file does not match its pointer")
            if readable and not persisted.equal(scratch):
                found.problems.append(
                    "running sum differs from the sum of its components recomputed from scratch"
                )

    versions = store.list_versions()
    status = {r.id: r.status for r in records}
    live_blobs = {v.blob_sha256 for v in versions if not v.purged}
    for version in versions:
        gone = [cid for cid in version.component_ids if status.get(cid) != "active"]
        if version.purged:
            if (
                version.blob_sha256 not in live_blobs
                and blobs.version_path(version.blob_sha256).exists()
            ):
                found.problems.append(f"version {version.number} was purged but its Δ remains")
            continue
        if gone:
            found.problems.append(
                f"version {version.number} still holds {len(gone)} forgotten component(s)"
            )
        try:
            blobs.read_version_delta(version.blob_sha256, version.delta_sha256)
        except IntegrityError as exc:
            found.problems.append(f"version {version.number}: {exc}")

    current = versions[-1] if versions else None
    if current is not None and not current.purged and readable:
        if set(current.component_ids) != in_sum:
            found.problems.append(
                f"current version {current.number} lists other components than the running sum"
            )
        else:
            expected = composition_bytes(
                scratch.mean(),
                base_sha256=settings.base.sha256,
                weighting=current.weighting,
                component_ids=current.component_ids,
            )
            if sha256_hex(expected) != current.blob_sha256:
                found.problems.append(
                    f"current version {current.number}'s Δ is not the composition of its "
                    "components recomputed from scratch"
                )

    stored_theta0 = any(e.details.get("theta0_stored") is True for e in events)
    if stored_theta0 or blobs.theta0_path().exists() or blobs.theta0_path().is_symlink():
        try:
            blobs.read_theta0()
        except IntegrityError as exc:  # MissingBlobError included: the log says it was stored
            found.problems.append(str(exc))

    found.garbage.extend(_garbage(store, blobs, known=set(status)))
    return VerifyReport(
        ok=not found.problems,
        components_checked=sum(1 for r in records if r.status == "active"),
        versions_checked=len(versions),
        audit_events_checked=len(events),
        problems=found.problems,
        garbage=found.garbage,
    )


def _duplicates(records: list[ComponentRecord]) -> list[str]:
    seen: dict[tuple[str, int], str] = {}
    problems = []
    for record in records:
        if record.status != "active":
            continue
        key = (record.silo, record.increment)
        if key in seen:
            problems.append(
                f"silo {record.silo} has two active components for increment "
                f"{record.increment} ({seen[key][:12]}… and {record.id[:12]}…)"
            )
        seen.setdefault(key, record.id)
    return problems


def _garbage(store: MetadataStore, blobs: BlobStore, *, known: set[str]) -> list[str]:
    """Files recover() would delete, except forgotten components' blobs (verify reports
    those as problems: a forgotten contribution must not stay on disk)."""
    garbage = [blobs.relative(p) for p in blobs.stray_files()]
    garbage += [
        blobs.relative(blobs.component_path(cid))
        for cid in blobs.list_components()
        if cid not in known
    ]
    pointer = store.get_sum_pointer()
    garbage += [
        blobs.relative(blobs.sum_path(sha))
        for sha in blobs.list_sums()
        if pointer is None or sha != pointer.sha256
    ]
    live = store.referenced_version_blobs()
    garbage += [
        blobs.relative(blobs.version_path(sha)) for sha in blobs.list_versions() if sha not in live
    ]
    return sorted(garbage)


def run_recover(store: MetadataStore, blobs: BlobStore) -> list[str]:
    """Delete every file the metadata does not account for; returns their relative paths."""
    removed = [blobs.relative(p) for p in clear_interrupted_writes(blobs.root)]
    for path in blobs.stray_files():
        if blobs.delete_path(path):
            removed.append(blobs.relative(path))
    active = {r.id for r in store.list_components(status="active")}
    for cid in blobs.list_components():
        if cid not in active and blobs.delete_component(cid):
            removed.append(blobs.relative(blobs.component_path(cid)))
    pointer = store.get_sum_pointer()
    for sha in blobs.list_sums():
        if (pointer is None or sha != pointer.sha256) and blobs.delete_sum(sha):
            removed.append(blobs.relative(blobs.sum_path(sha)))
    live = store.referenced_version_blobs()
    for sha in blobs.list_versions():
        if sha not in live and blobs.delete_version(sha):
            removed.append(blobs.relative(blobs.version_path(sha)))
    return sorted(removed)
