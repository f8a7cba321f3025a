"""What the registry stores and returns, as immutable pydantic entities.

Stores convert their rows to these (and back) in one place each; everything above the
store layer (the facade, the CLI, the admin API) sees only entities.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field, JsonValue, field_validator

from tmc.common.components import (
    UNENCODED,
    Component,
    Encoding,
    PrivacyMeta,
    TangentSchema,
    Weighting,
    payload_bytes,
)
from tmc.common.components.component import SHA256_PATTERN
from tmc.common.data.inputs import DataSpec
from tmc.common.federation.admission import PartitionRecord
from tmc.common.schema import StrictModel
from tmc.server.registry.privacy import PrivacyFloor

if TYPE_CHECKING:
    from tmc.common.models import MaterializedBase

SCHEMA_VERSION = 3
"""Version of the registry's metadata layout; a database with a higher one is refused.
2: silo tombstones (permanent forgetting), θ0 stored in the registry, the data spec.
3: one active component per (silo, increment); the audit anchor file (``audit.anchor``)."""

ComponentStatus = Literal["active", "forgotten"]
StatusFilter = Literal["active", "forgotten", "all"]
StoreKind = Literal["sqlite", "memory"]
AuditAction = Literal[
    "create",
    "add",
    "reject",
    "forget",
    "readmit",
    "version",
    "verify",
    "export",
    "recover",
    "settings",
]

GENESIS_CHAIN = "0" * 64
"""The chain value before the first audit event."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def canonical_json(value: object) -> str:
    """Sorted-key compact JSON: stable text for hashing and byte-identical exports."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class BaseRecord(StrictModel):
    """θ0 as the registry knows it: its spec, its hash and the shapes of its tangent Δ."""

    spec_json: str = Field(max_length=1_000_000, description="the base spec's canonical JSON")
    sha256: str = Field(pattern=SHA256_PATTERN, description="hash of θ0 (tensors_sha256)")
    shapes: dict[str, tuple[int, ...]]
    created_at: datetime = Field(default_factory=utc_now)

    @field_validator("shapes")
    @classmethod
    def _valid_shapes(cls, value: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        if not value:
            raise ValueError("a base needs at least one tangent parameter")
        for name, shape in value.items():
            if not name or len(name) > 512 or any(d < 0 for d in shape):
                raise ValueError(f"invalid tangent parameter {name[:64]!r} {shape}")
        return {name: tuple(value[name]) for name in sorted(value)}

    @field_validator("created_at")
    @classmethod
    def _created_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    def schema(self) -> TangentSchema:  # type: ignore[override]  # pydantic's is deprecated
        """What every component of this base must look like."""
        return TangentSchema(self.sha256, dict(self.shapes))

    def same_base(self, other: BaseRecord) -> bool:
        return self.sha256 == other.sha256 and self.shapes == other.shapes

    @classmethod
    def from_materialized(cls, base: MaterializedBase) -> BaseRecord:
        """The record of a materialised base (what the ServerApp holds)."""
        shapes = {name: shape for name, (shape, _) in base.tangent_shapes().items()}
        return cls(spec_json=base.spec.canonical_json(), sha256=base.sha256, shapes=shapes)


class RegistrySettings(StrictModel):
    """Fixed at creation: which base, how components are weighted, the norm bound, the
    federation's label space and input spec. ``partition`` is recorded once, by the first
    silo whose data come from a partition of a dataset."""

    schema_version: int = Field(SCHEMA_VERSION, ge=1)
    base: BaseRecord
    weighting: Weighting = "uniform"
    max_norm: float | None = Field(None, gt=0, allow_inf_nan=False)
    data: DataSpec | None = Field(None, description="None only in registries made before v2")
    partition: PartitionRecord | None = None
    privacy: PrivacyFloor | None = Field(
        None, description="what every component must state (from the creating run's DP settings)"
    )
    created_at: datetime = Field(default_factory=utc_now)


class ComponentRecord(StrictModel):
    """A component's row: its metadata (not its tensors) and where it stands."""

    id: str = Field(pattern=SHA256_PATTERN)
    silo: str
    round: int = Field(ge=0, description="the round the component says it was trained for")
    increment: int = Field(ge=0)
    task: str | None = None
    num_examples: int = Field(ge=1)
    classes: tuple[int, ...] = ()
    metrics: dict[str, float] = Field(default_factory=dict)
    data_fingerprint: str | None = None
    norm: float = Field(ge=0)
    status: ComponentStatus = "active"
    blob_sha256: str = Field(pattern=SHA256_PATTERN, description="sha256 of the stored file")
    created_at: datetime
    added_at: datetime
    forgotten_at: datetime | None = None
    actor: str
    received_round: int | None = Field(None, description="server round that accepted it")
    in_sum: bool = Field(False, description="included in the persisted running sum")
    encoding: Encoding = Field(UNENCODED, description="how Δ was uploaded and is stored")
    payload_bytes: int | None = Field(None, ge=0, description="bytes of Δ as uploaded")
    privacy: PrivacyMeta | None = Field(None, description="DP-SGD accounting (None: no DP)")

    @field_validator("created_at", "added_at", "forgotten_at")
    @classmethod
    def _times_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    @classmethod
    def of(
        cls,
        component: Component,
        *,
        blob_sha256: str,
        actor: str,
        received_round: int | None,
        added_at: datetime,
    ) -> ComponentRecord:
        meta = component.meta
        return cls(
            id=component.id,
            silo=meta.silo,
            round=meta.round,
            increment=meta.increment,
            task=meta.task,
            num_examples=meta.num_examples,
            classes=meta.classes,
            metrics=dict(meta.metrics),
            data_fingerprint=meta.data_fingerprint,
            norm=component.delta.norm(),
            blob_sha256=blob_sha256,
            created_at=meta.created_at,
            added_at=added_at,
            actor=actor,
            received_round=received_round,
            encoding=meta.encoding,
            payload_bytes=payload_bytes(component.payload),
            privacy=meta.privacy,
        )


class ModelVersion(StrictModel):
    """A committed composition: exactly which components, with which weighting."""

    number: int = Field(ge=1)
    component_ids: tuple[str, ...]
    weighting: Weighting
    delta_sha256: str = Field(pattern=SHA256_PATTERN, description="tensors_sha256 of Δ")
    blob_sha256: str = Field(pattern=SHA256_PATTERN, description="sha256 of the Δ file")
    created_at: datetime = Field(default_factory=utc_now)
    round: int | None = None
    reason: str = ""
    actor: str = "server"
    purged: bool = Field(False, description="Δ deleted: it contained forgotten components")

    @field_validator("component_ids")
    @classmethod
    def _sorted_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))

    @field_validator("created_at")
    @classmethod
    def _created_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @property
    def count(self) -> int:
        return len(self.component_ids)


class SumPointer(StrictModel):
    """Which accumulator blob holds the exact running sum (the rows' ``in_sum`` say of what)."""

    sha256: str = Field(pattern=SHA256_PATTERN)
    count: int = Field(ge=0)
    total_weight: int = Field(ge=0, description="Σ wᵢ in 2⁻³² fixed point (may exceed int64)")
    updated_at: datetime = Field(default_factory=utc_now)


class AuditDraft(StrictModel):
    """An audit event before the store numbers and chains it."""

    at: datetime = Field(default_factory=utc_now)
    actor: str = Field(min_length=1, max_length=256)
    action: AuditAction
    silo: str | None = Field(None, max_length=256)
    component_id: str | None = Field(None, max_length=64)
    details: dict[str, JsonValue] = Field(default_factory=dict)
    hashes: dict[str, str] = Field(default_factory=dict)

    @field_validator("at")
    @classmethod
    def _at_utc(cls, value: datetime) -> datetime:
        return _utc(value)


class AuditEvent(AuditDraft):
    """One line of the append-only audit log: who did what, when, to which hashes.

    ``chain_sha256`` hashes the previous event's chain value with this event's content, so
    editing or deleting any event (even with direct file access) breaks every later value.
    """

    seq: int = Field(ge=1)
    chain_sha256: str = Field(pattern=SHA256_PATTERN)

    def body_json(self) -> str:
        return canonical_json(self.model_dump(mode="json", exclude={"chain_sha256"}))

    @classmethod
    def chained(cls, draft: AuditDraft, *, seq: int, previous_chain: str) -> AuditEvent:
        unchained = {**draft.model_dump(), "seq": seq, "chain_sha256": GENESIS_CHAIN}
        event = cls.model_validate(unchained)
        return event.model_copy(update={"chain_sha256": chain_hash(previous_chain, event)})


def chain_hash(previous_chain: str, event: AuditEvent) -> str:
    return hashlib.sha256(f"{previous_chain}\n{event.body_json()}".encode()).hexdigest()


class SiloTombstone(StrictModel):
    """A silo forgotten on request. While ``active`` every later contribution of the silo
    is refused; only the operator lifts it (``readmit``), and the audit log keeps both."""

    silo: str = Field(max_length=256)
    active: bool = True
    forgotten_at: datetime
    reason: str = Field("", max_length=2000)
    actor: str = Field(max_length=256)
    readmitted_at: datetime | None = None
    readmit_reason: str = Field("", max_length=2000)
    readmit_actor: str | None = Field(None, max_length=256)

    @field_validator("forgotten_at", "readmitted_at")
    @classmethod
    def _times_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    def refusal(self) -> str:
        """Why the silo's contributions are refused, as the silo and the audit log read it."""
        when = self.forgotten_at.strftime("%Y-%m-%d %H:%M UTC")
        return f"forgotten on {when}: {self.reason or 'no reason given'}"


class ForgetResult(StrictModel):
    removed: tuple[str, ...]
    version: ModelVersion
    receipt: str | None = Field(
        None, description="the signed forget receipt (JSON), where the forget issued one"
    )


class VerifyReport(StrictModel):
    """``ok``: no problem found. ``garbage``: leftovers of an interrupted operation that
    ``recover()`` deletes (temp files, unreferenced blobs); they do not make ``ok`` false."""

    ok: bool
    components_checked: int = 0
    versions_checked: int = 0
    audit_events_checked: int = 0
    problems: list[str] = Field(default_factory=list)
    garbage: list[str] = Field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.ok and not self.garbage


class SiloSummary(StrictModel):
    silo: str
    active: int
    forgotten: int
    num_examples: int = Field(description="over active components")
    classes: tuple[int, ...] = Field(description="union over active components")
    rounds: tuple[int, ...] = Field(description="rounds of active components")
    last_added_at: datetime | None
    forgotten_on: datetime | None = Field(None, description="set while the silo is tombstoned")
    forgotten_reason: str | None = None


class RegistryStatus(StrictModel):
    root: str
    store: StoreKind
    schema_version: int
    base_sha256: str
    weighting: Weighting
    max_norm: float | None
    active: int
    forgotten: int
    pending: int = Field(description="active components not yet in a committed version")
    silos: int
    current_version: int | None
    versions: int
    audit_events: int
    created_at: datetime
    tombstoned: int = Field(0, description="silos forgotten and not readmitted")
