"""Registry entities ↔ admin API messages, both ways and losslessly: a record sent by the
server and read back by the client is equal to the server's (same ids, floats, times to
the microsecond), so remote answers can be compared with local ones."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tmc.common.components import UNENCODED, PrivacyMeta
from tmc.server.admin.proto import pb
from tmc.server.registry import (
    AuditEvent,
    ComponentRecord,
    ForgetResult,
    ModelVersion,
    RegistryStatus,
    SiloSummary,
    SiloTombstone,
)
from tmc.server.registry.entities import canonical_json


def timestamp(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return out


def from_timestamp(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def _optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def _optional_time(message: Any, field: str) -> datetime | None:
    return from_timestamp(getattr(message, field)) if message.HasField(field) else None


# -- components and versions -----------------------------------------------------------------


def component_to_pb(record: ComponentRecord) -> pb.Component:
    message = pb.Component(
        id=record.id,
        silo=record.silo,
        round=record.round,
        increment=record.increment,
        task=record.task,
        num_examples=record.num_examples,
        classes=list(record.classes),
        metrics=dict(record.metrics),
        data_fingerprint=record.data_fingerprint,
        norm=record.norm,
        status=record.status,
        blob_sha256=record.blob_sha256,
        created_at=timestamp(record.created_at),
        added_at=timestamp(record.added_at),
        actor=record.actor,
        received_round=record.received_round,
        in_sum=record.in_sum,
        encoding=record.encoding,
        payload_bytes=record.payload_bytes,
    )
    if record.forgotten_at is not None:
        message.forgotten_at.CopyFrom(timestamp(record.forgotten_at))
    if record.privacy is not None:
        message.privacy.CopyFrom(pb.Privacy(**record.privacy.model_dump()))
    return message


def component_from_pb(message: pb.Component) -> ComponentRecord:
    return ComponentRecord(
        id=message.id,
        silo=message.silo,
        round=message.round,
        increment=message.increment,
        task=_optional(message, "task"),
        num_examples=message.num_examples,
        classes=tuple(message.classes),
        metrics=dict(message.metrics),
        data_fingerprint=_optional(message, "data_fingerprint"),
        norm=message.norm,
        status=message.status,
        blob_sha256=message.blob_sha256,
        created_at=from_timestamp(message.created_at),
        added_at=from_timestamp(message.added_at),
        forgotten_at=_optional_time(message, "forgotten_at"),
        actor=message.actor,
        received_round=_optional(message, "received_round"),
        in_sum=message.in_sum,
        encoding=message.encoding or UNENCODED,
        payload_bytes=_optional(message, "payload_bytes"),
        privacy=_privacy_from_pb(message.privacy) if message.HasField("privacy") else None,
    )


def _privacy_from_pb(message: pb.Privacy) -> PrivacyMeta:
    return PrivacyMeta(
        mechanism=message.mechanism,
        epsilon=message.epsilon,
        delta=message.delta,
        noise_multiplier=message.noise_multiplier,
        clip=message.clip,
        steps=message.steps,
        sampling_rate=message.sampling_rate,
        neighbouring=message.neighbouring,
        accountant=message.accountant,
        accountant_version=message.accountant_version,
    )


def version_to_pb(version: ModelVersion) -> pb.ModelVersion:
    return pb.ModelVersion(
        number=version.number,
        component_ids=list(version.component_ids),
        weighting=version.weighting,
        delta_sha256=version.delta_sha256,
        blob_sha256=version.blob_sha256,
        created_at=timestamp(version.created_at),
        round=version.round,
        reason=version.reason,
        actor=version.actor,
        purged=version.purged,
    )


def version_from_pb(message: pb.ModelVersion) -> ModelVersion:
    return ModelVersion(
        number=message.number,
        component_ids=tuple(message.component_ids),
        weighting=message.weighting,
        delta_sha256=message.delta_sha256,
        blob_sha256=message.blob_sha256,
        created_at=from_timestamp(message.created_at),
        round=_optional(message, "round"),
        reason=message.reason,
        actor=message.actor,
        purged=message.purged,
    )


def forget_to_pb(result: ForgetResult) -> pb.ForgetResponse:
    return pb.ForgetResponse(
        removed=list(result.removed),
        version=version_to_pb(result.version),
        receipt_json=result.receipt or "",
    )


def forget_from_pb(message: pb.ForgetResponse) -> ForgetResult:
    return ForgetResult(
        removed=tuple(message.removed),
        version=version_from_pb(message.version),
        receipt=message.receipt_json or None,
    )


# -- status ------------------------------------------------------------------------------------


def silo_to_pb(summary: SiloSummary) -> pb.SiloSummary:
    message = pb.SiloSummary(
        silo=summary.silo,
        active=summary.active,
        forgotten=summary.forgotten,
        num_examples=summary.num_examples,
        classes=list(summary.classes),
        rounds=list(summary.rounds),
        forgotten_reason=summary.forgotten_reason,
    )
    if summary.last_added_at is not None:
        message.last_added_at.CopyFrom(timestamp(summary.last_added_at))
    if summary.forgotten_on is not None:
        message.forgotten_on.CopyFrom(timestamp(summary.forgotten_on))
    return message


def silo_from_pb(message: pb.SiloSummary) -> SiloSummary:
    return SiloSummary(
        silo=message.silo,
        active=message.active,
        forgotten=message.forgotten,
        num_examples=message.num_examples,
        classes=tuple(message.classes),
        rounds=tuple(message.rounds),
        last_added_at=_optional_time(message, "last_added_at"),
        forgotten_on=_optional_time(message, "forgotten_on"),
        forgotten_reason=_optional(message, "forgotten_reason"),
    )


def status_to_pb(status: RegistryStatus, silos: Iterable[SiloSummary]) -> pb.StatusResponse:
    return pb.StatusResponse(
        root=status.root,
        store=status.store,
        schema_version=status.schema_version,
        base_sha256=status.base_sha256,
        weighting=status.weighting,
        max_norm=status.max_norm,
        active=status.active,
        forgotten=status.forgotten,
        pending=status.pending,
        silos=status.silos,
        current_version=status.current_version,
        versions=status.versions,
        audit_events=status.audit_events,
        created_at=timestamp(status.created_at),
        silo_summaries=[silo_to_pb(s) for s in silos],
        tombstoned=status.tombstoned,
    )


def status_from_pb(message: pb.StatusResponse) -> tuple[RegistryStatus, list[SiloSummary]]:
    status = RegistryStatus(
        root=message.root,
        store=message.store,
        schema_version=message.schema_version,
        base_sha256=message.base_sha256,
        weighting=message.weighting,
        max_norm=_optional(message, "max_norm"),
        active=message.active,
        forgotten=message.forgotten,
        pending=message.pending,
        silos=message.silos,
        current_version=_optional(message, "current_version"),
        versions=message.versions,
        audit_events=message.audit_events,
        created_at=from_timestamp(message.created_at),
        tombstoned=message.tombstoned,
    )
    return status, [silo_from_pb(s) for s in message.silo_summaries]


def readmit_to_pb(tombstone: SiloTombstone) -> pb.ReadmitResponse:
    response = pb.ReadmitResponse(
        silo=tombstone.silo, forgotten_at=timestamp(tombstone.forgotten_at)
    )
    if tombstone.readmitted_at is not None:
        response.readmitted_at.CopyFrom(timestamp(tombstone.readmitted_at))
    return response


def readmit_from_pb(message: pb.ReadmitResponse) -> tuple[str, datetime, datetime | None]:
    """(silo, forgotten at, readmitted at)."""
    return (
        message.silo,
        from_timestamp(message.forgotten_at),
        _optional_time(message, "readmitted_at"),
    )


# -- audit ---------------------------------------------------------------------------------------


def audit_to_pb(event: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(
        seq=event.seq,
        at=timestamp(event.at),
        actor=event.actor,
        action=event.action,
        silo=event.silo,
        component_id=event.component_id,
        details_json=canonical_json(event.details),
        hashes=dict(event.hashes),
        chain_sha256=event.chain_sha256,
    )


def audit_from_pb(message: pb.AuditEvent) -> AuditEvent:
    return AuditEvent(
        seq=message.seq,
        at=from_timestamp(message.at),
        actor=message.actor,
        action=message.action,
        silo=_optional(message, "silo"),
        component_id=_optional(message, "component_id"),
        details=json.loads(message.details_json or "{}"),
        hashes=dict(message.hashes),
        chain_sha256=message.chain_sha256,
    )
