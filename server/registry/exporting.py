"""File formats that leave the registry: the composed Δ and the audit log.

A composed Δ is a safetensors file whose only metadata is ``tmc.composition``: the canonical
JSON of {base_sha256, weighting, component_ids (sorted), count}. No timestamp, no version
number: two files describing the same set of components are byte-identical, so "the model
after forgetting silo X" can be compared with "the model without silo X" by hash alone.
Versions are stored in this same format.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from safetensors import SafetensorError
from safetensors.torch import load, save

from tmc.common.components import Delta, Weighting
from tmc.common.errors import ComponentError, RegistryError
from tmc.common.files import atomic_write_bytes
from tmc.server.registry.blobs import safetensors_metadata
from tmc.server.registry.entities import AuditEvent, canonical_json

COMPOSITION_KEY = "tmc.composition"
AuditFormat = Literal["json", "csv"]
AUDIT_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "silo",
    "component_id",
    "details",
    "hashes",
    "chain_sha256",
)


def composition_metadata(
    *, base_sha256: str, weighting: Weighting, component_ids: Iterable[str]
) -> str:
    ids = sorted(component_ids)
    return canonical_json(
        {
            "base_sha256": base_sha256,
            "weighting": weighting,
            "component_ids": ids,
            "count": len(ids),
        }
    )


def composition_bytes(
    delta: Delta, *, base_sha256: str, weighting: Weighting, component_ids: Sequence[str]
) -> bytes:
    """The composed Δ as safetensors bytes: a function of (Δ, base, weighting, id set) only.
    One metadata key on purpose: safetensors writes several in an unspecified order."""
    metadata = composition_metadata(
        base_sha256=base_sha256, weighting=weighting, component_ids=component_ids
    )
    return save(delta.to_dict(), metadata={COMPOSITION_KEY: metadata})


def read_composition(data: bytes) -> tuple[Delta, dict[str, Any]]:
    """Parse an exported composition: (Δ, its composition metadata)."""
    try:
        info = json.loads(safetensors_metadata(data)[COMPOSITION_KEY])
        delta = Delta(load(data))
    except (KeyError, ValueError, SafetensorError, ComponentError) as exc:
        raise RegistryError(f"not a TMC composition file: {exc}") from exc
    return delta, info


def audit_bytes(events: Sequence[AuditEvent], fmt: AuditFormat) -> bytes:
    """The audit log as JSON (a list of events) or CSV (details and hashes as JSON cells)."""
    rows = [event.model_dump(mode="json") for event in events]
    if fmt == "json":
        return (json.dumps(rows, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            row["details"] = canonical_json(row["details"])
            row["hashes"] = canonical_json(row["hashes"])
            writer.writerow({column: row[column] for column in AUDIT_COLUMNS})
        return buffer.getvalue().encode()
    raise RegistryError(f"unknown audit export format {fmt!r}: use json or csv")


def write_audit(events: Sequence[AuditEvent], path: Path, fmt: AuditFormat) -> None:
    atomic_write_bytes(path, audit_bytes(events, fmt), mode=0o600)
