"""A component: one Δ trained on one shard of data, with the metadata that says whose.

Its id is the sha256 of its canonical content (metadata as sorted JSON, then the tensors
in name order, see ``common.hashing``), so the same content has the same id on every
machine and any change to a byte gives another id.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import torch
from pydantic import Field, field_validator

from tmc.common.components.delta import Delta
from tmc.common.components.encoding import UNENCODED, Encoding, Payload, decode, encode
from tmc.common.components.privacy import PrivacyMeta
from tmc.common.errors import ComponentError
from tmc.common.hashing import update_with_tensors
from tmc.common.schema import StrictModel

SHA256_PATTERN = r"^[0-9a-f]{64}$"
SILO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Silo names: what a person types on a command line and what is safe in a file name."""

_ID_DOMAIN = b"tmc-component-v1\0"


class ComponentMeta(StrictModel):
    """What a component says about itself. The server checks each claim it can check
    (base hash, silo identity, num_examples > 0, finite metrics) before accepting it."""

    schema_version: int = Field(1, ge=1, le=1)
    base_sha256: str = Field(pattern=SHA256_PATTERN, description="θ0 this Δ was trained from")
    silo: str = Field(pattern=SILO_PATTERN)
    round: int = Field(0, ge=0, le=10_000_000, description="federated round that asked for it")
    increment: int = Field(0, ge=0, le=10_000_000, description="which slice of the silo's data")
    task: str | None = Field(None, max_length=128)
    classes: tuple[int, ...] = Field((), max_length=100_000, description="labels in the shard")
    num_examples: int = Field(ge=1, le=10**12)
    metrics: dict[str, float] = Field(default_factory=dict, max_length=64)
    data_fingerprint: str | None = Field(None, pattern=SHA256_PATTERN)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    encoding: Encoding = Field(UNENCODED, description="how Δ travelled and is stored")
    privacy: PrivacyMeta | None = Field(None, description="DP-SGD accounting (None: no DP)")

    @field_validator("metrics")
    @classmethod
    def _finite_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for key, metric in value.items():
            if len(key) > 64 or not math.isfinite(metric):
                raise ValueError(f"metric {key[:64]!r} must have a short name and a finite value")
        return value

    @field_validator("classes")
    @classmethod
    def _sorted_classes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(c < 0 for c in value):
            raise ValueError("class labels must be non-negative")
        return tuple(sorted(set(value)))

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def canonical_json(self) -> str:
        """Sorted-key compact JSON: the form that is hashed and stored. The default float32
        encoding and an absent privacy record are left out, so components made before
        either existed keep their ids."""
        payload: dict[str, Any] = self.model_dump(mode="json")
        if self.encoding == "float32":
            del payload["encoding"]
        if self.privacy is None:
            del payload["privacy"]
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class Component:
    """Δ + metadata, immutable. Arithmetic on components gives :class:`Delta` values
    (a sum of two components is no longer one silo's component).

    ``payload`` is Δ as it travelled and is stored, in ``meta.encoding``
    (``common.components.encoding``); ``delta`` is its exact float32 decoding, what
    composition uses. For float32 they are the same tensors. The id hashes the payload."""

    __slots__ = ("delta", "id", "meta", "payload")

    def __init__(
        self, delta: Delta, meta: ComponentMeta, *, payload: Payload | None = None
    ) -> None:
        if payload is None:
            if meta.encoding != "float32":
                raise ComponentError(
                    f"a {meta.encoding} component needs its payload: use Component.encoded "
                    "or Component.of_payload"
                )
            payload = delta.to_dict()
        self.delta = delta
        self.meta = meta
        self.payload = payload
        self.id = component_id(payload, meta)

    @classmethod
    def of_payload(cls, payload: Payload, meta: ComponentMeta) -> Component:
        """The component a received payload stands for (checked, then decoded exactly)."""
        return cls(decode(payload, meta.encoding), meta, payload=dict(payload))

    @classmethod
    def encoded(cls, delta: Delta, meta: ComponentMeta) -> Component:
        """Encode ``delta`` as ``meta.encoding`` says; its Δ is the decoded payload."""
        return cls.of_payload(encode(delta, meta.encoding), meta)

    def __repr__(self) -> str:
        return (
            f"Component(id={self.id[:12]}…, silo={self.meta.silo!r}, round={self.meta.round}, "
            f"num_examples={self.meta.num_examples}, norm={self.delta.norm():.4g})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Component) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __add__(self, other: object) -> Delta:
        if isinstance(other, Component):
            return self.delta + other.delta
        if isinstance(other, Delta):
            return self.delta + other
        return NotImplemented

    def __radd__(self, other: object) -> Delta:
        if isinstance(other, Delta):
            return other + self.delta
        return self.delta.__radd__(other)

    def __sub__(self, other: object) -> Delta:
        if isinstance(other, Component):
            return self.delta - other.delta
        if isinstance(other, Delta):
            return self.delta - other
        return NotImplemented

    def __mul__(self, scalar: object) -> Delta:
        return self.delta.__mul__(scalar)

    __rmul__ = __mul__

    def __neg__(self) -> Delta:
        return -self.delta


def component_id(payload: Mapping[str, torch.Tensor], meta: ComponentMeta) -> str:
    """sha256 over a domain tag, the canonical metadata JSON and the canonical tensors of
    the payload (for float32 components, Δ itself)."""
    digest = hashlib.sha256(_ID_DOMAIN)
    encoded = meta.canonical_json().encode()
    digest.update(len(encoded).to_bytes(8, "little"))
    digest.update(encoded)
    update_with_tensors(digest, payload)
    return digest.hexdigest()
