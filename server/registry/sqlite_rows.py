"""The SQLite registry's tables, and the conversions between their rows and the entities
(the only place that knows the column layout)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tmc.server.registry.entities import (
    SCHEMA_VERSION,
    AuditEvent,
    ComponentRecord,
    ModelVersion,
    SumPointer,
    canonical_json,
)

MIGRATIONS: dict[int, tuple[str, ...]] = {
    # v1 → v2: tombstones of silos forgotten on request (permanent forgetting); how each
    # component was uploaded (encoding, bytes); its DP-SGD accounting (JSON, NULL: no DP).
    2: (
        "CREATE TABLE IF NOT EXISTS tombstones (silo TEXT PRIMARY KEY, body TEXT NOT NULL)",
        "ALTER TABLE components ADD COLUMN encoding TEXT NOT NULL DEFAULT 'float32'",
        "ALTER TABLE components ADD COLUMN payload_bytes INTEGER",
        "ALTER TABLE components ADD COLUMN privacy TEXT",
    ),
    # v2 → v3: one active component per (silo, increment), in the database itself (a
    # second run on the registry, or a second writer, cannot commit the same work twice).
    # Triggers rather than a unique index: an older registry that already holds such
    # duplicates still opens, and verify names them.
    3: (
        """CREATE TRIGGER IF NOT EXISTS components_one_active_insert BEFORE INSERT ON components
            WHEN NEW.status = 'active' AND EXISTS (SELECT 1 FROM components
                WHERE silo = NEW.silo AND increment = NEW.increment AND status = 'active')
            BEGIN SELECT RAISE(ABORT, 'one active component per silo and increment'); END""",
        """CREATE TRIGGER IF NOT EXISTS components_one_active_update
            BEFORE UPDATE OF status ON components
            WHEN NEW.status = 'active' AND EXISTS (SELECT 1 FROM components
                WHERE silo = NEW.silo AND increment = NEW.increment AND status = 'active'
                AND id != NEW.id)
            BEGIN SELECT RAISE(ABORT, 'one active component per silo and increment'); END""",
    ),
}
"""Statements that bring a database from the previous schema version to the key's."""

DDL = (
    """CREATE TABLE settings (
        id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL)""",
    """CREATE TABLE components (
        id TEXT PRIMARY KEY, silo TEXT NOT NULL, round INTEGER NOT NULL,
        increment INTEGER NOT NULL, task TEXT, num_examples INTEGER NOT NULL,
        classes TEXT NOT NULL, metrics TEXT NOT NULL, data_fingerprint TEXT,
        norm REAL NOT NULL, status TEXT NOT NULL CHECK (status IN ('active', 'forgotten')),
        blob_sha256 TEXT NOT NULL, created_at TEXT NOT NULL, added_at TEXT NOT NULL,
        forgotten_at TEXT, actor TEXT NOT NULL, received_round INTEGER,
        in_sum INTEGER NOT NULL CHECK (in_sum IN (0, 1)))""",
    "CREATE INDEX components_by_silo ON components (silo, status)",
    "CREATE INDEX components_by_state ON components (status, in_sum)",
    """CREATE TABLE versions (
        number INTEGER PRIMARY KEY, weighting TEXT NOT NULL, delta_sha256 TEXT NOT NULL,
        blob_sha256 TEXT NOT NULL, created_at TEXT NOT NULL, round INTEGER,
        reason TEXT NOT NULL, actor TEXT NOT NULL,
        purged INTEGER NOT NULL CHECK (purged IN (0, 1)))""",
    """CREATE TABLE version_members (
        version INTEGER NOT NULL REFERENCES versions (number), component_id TEXT NOT NULL,
        PRIMARY KEY (version, component_id)) WITHOUT ROWID""",
    "CREATE INDEX version_members_by_component ON version_members (component_id)",
    """CREATE TABLE running_sum (
        id INTEGER PRIMARY KEY CHECK (id = 1), sha256 TEXT NOT NULL, count INTEGER NOT NULL,
        total_weight TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        silo TEXT, component_id TEXT, details TEXT NOT NULL, hashes TEXT NOT NULL,
        chain_sha256 TEXT NOT NULL)""",
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    *(MIGRATIONS[2]),
    *(MIGRATIONS[3]),
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)


_NAMED_OBJECT = re.compile(r"\s*CREATE (?:UNIQUE )?(?:TRIGGER|INDEX) (?:IF NOT EXISTS )?(\w+)")


def schema_objects() -> dict[str, str]:
    """The triggers and indexes of the schema, by name: the statements that create them."""
    found = {}
    for statement in (*DDL, *(s for batch in MIGRATIONS.values() for s in batch)):
        match = re.match(
            r"\s*CREATE (?:UNIQUE )?(?:TRIGGER|INDEX) (?:IF NOT EXISTS )?(\w+)", statement
        )
        if match:
            found[match.group(1)] = statement
    return found


def ts(value: datetime | None) -> str | None:
    # Fixed-width UTC text, so that SQL string order is time order.
    if value is None:
        return None
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def component_to_row(record: ComponentRecord) -> dict[str, Any]:
    row = record.model_dump(mode="json")
    row.update(
        classes=canonical_json(list(record.classes)),
        metrics=canonical_json(record.metrics),
        created_at=ts(record.created_at),
        added_at=ts(record.added_at),
        forgotten_at=ts(record.forgotten_at),
        in_sum=int(record.in_sum),
        privacy=None if record.privacy is None else canonical_json(row["privacy"]),
    )
    return row


def component_from_row(row: sqlite3.Row) -> ComponentRecord:
    data = dict(row)
    data["classes"] = tuple(json.loads(data["classes"]))
    data["metrics"] = json.loads(data["metrics"])
    data["in_sum"] = bool(data["in_sum"])
    data["privacy"] = None if data.get("privacy") is None else json.loads(data["privacy"])
    return ComponentRecord.model_validate(data)


def version_to_row(version: ModelVersion) -> dict[str, Any]:
    row = version.model_dump(mode="json", exclude={"component_ids"})
    row.update(created_at=ts(version.created_at), purged=int(version.purged))
    return row


def version_from_row(row: sqlite3.Row, component_ids: Iterable[str]) -> ModelVersion:
    data = dict(row)
    data["purged"] = bool(data["purged"])
    data["component_ids"] = tuple(component_ids)
    return ModelVersion.model_validate(data)


def audit_to_row(event: AuditEvent) -> dict[str, Any]:
    row = event.model_dump(mode="json")
    row.update(
        at=ts(event.at),
        details=canonical_json(row["details"]),
        hashes=canonical_json(row["hashes"]),
    )
    return row


def audit_from_row(row: sqlite3.Row) -> AuditEvent:
    data = dict(row)
    data["details"] = json.loads(data["details"])
    data["hashes"] = json.loads(data["hashes"])
    return AuditEvent.model_validate(data)


def pointer_from_row(row: sqlite3.Row) -> SumPointer:
    data = dict(row)
    data.pop("id")
    data["total_weight"] = int(data["total_weight"])
    return SumPointer.model_validate(data)


def insert_sql(table: str, row: Mapping[str, Any]) -> str:
    names = ", ".join(row)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in row)})"
