"""SQLite metadata store: ``registry.db`` in WAL mode, shared safely by several processes.

The Flower ServerApp and the admin API server may open the same registry at once. Writes
take ``BEGIN IMMEDIATE`` (one writer at a time, others wait up to the busy timeout);
readers never block in WAL mode. ``synchronous=FULL`` makes a commit durable before it
returns. The audit table is append-only: triggers abort any UPDATE or DELETE on it, and every
commit that appends to it moves the anchor file beside the database (``anchor``), which
``verify`` compares with the log.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from tmc.common.errors import IntegrityError, NotFoundError, RegistryError
from tmc.server.registry import sqlite_rows as convert
from tmc.server.registry.anchor import anchor_problems, read_anchor, write_anchor
from tmc.server.registry.entities import (
    SCHEMA_VERSION,
    AuditEvent,
    ComponentRecord,
    ModelVersion,
    RegistrySettings,
    SiloTombstone,
    StatusFilter,
    StoreKind,
    SumPointer,
)
from tmc.server.registry.errors import (
    RegistryClosedError,
    RegistryIncompleteError,
    RegistryLockedError,
    SchemaVersionError,
)
from tmc.server.registry.store import MetadataStore, check_status

DB_FILENAME = "registry.db"
_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit


class SQLiteMetadataStore(MetadataStore):
    kind: StoreKind = "sqlite"

    def __init__(self, path: Path, *, create: bool = False, busy_timeout_s: float = 60.0) -> None:
        self.path = path
        if create:
            # Created empty with owner-only permissions; SQLite gives its -wal and -shm
            # files the same permissions as the database file.
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        elif not path.is_file():
            raise NotFoundError(f"no registry database at {path}")
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None
        self._busy_timeout_s = busy_timeout_s
        self._closed = False
        self._audit_appended = self._settings_changed = False
        self._conn = sqlite3.connect(
            str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RegistryError(f"{path}: SQLite cannot use WAL mode here (got {mode!r})")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            if create:
                with self.transaction():
                    for statement in convert.DDL:
                        self._conn.execute(statement)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.OperationalError):  # locked, busy: not about the file
                raise
            raise RegistryError(f"{path} is not a registry database (SQLite: {exc})") from exc
        except BaseException:
            self._conn.close()
            raise

    def _check_schema(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            raise RegistryIncompleteError(f"{self.path} is not a registry database (no schema yet)")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} has registry schema {version}; this code reads up to "
                f"{SCHEMA_VERSION}: upgrade the server"
            )
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        """Bring an older database up to :data:`SCHEMA_VERSION`, in one transaction."""
        with self.transaction():
            current = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            for target in range(current + 1, SCHEMA_VERSION + 1):
                for statement in convert.MIGRATIONS[target]:
                    self._conn.execute(statement)
            if current < 2 <= SCHEMA_VERSION:
                self._backfill_tombstones()
            settings = self.get_settings()
            if settings is not None:
                self.put_settings(settings.model_copy(update={"schema_version": SCHEMA_VERSION}))
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _backfill_tombstones(self) -> None:
        # Before v2 a forgotten silo was only a set of forgotten rows and audit events:
        # the last silo-wide forget of a silo with nothing active left becomes its tombstone.
        last: dict[str, AuditEvent] = {}
        for event in self.list_audit():
            if event.action == "forget" and event.silo and event.details.get("requested") == "silo":
                last[event.silo] = event
        for silo, event in sorted(last.items()):
            if self.list_components(silo=silo, status="active"):
                continue
            reason = event.details.get("reason")
            self.put_tombstone(
                SiloTombstone(
                    silo=silo,
                    forgotten_at=event.at,
                    reason=reason if isinstance(reason, str) else "",
                    actor=event.actor,
                )
            )

    # -- transactions ------------------------------------------------------------------------

    def _begin(self, statement: str) -> None:
        try:
            self._conn.execute(statement)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise RegistryLockedError(
                    f"{self.path} stayed locked by another process for more than "
                    f"{self._busy_timeout_s:g} s; nothing was changed"
                ) from exc
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            if self._depth:
                if self._owner is None:
                    raise RegistryError("internal error: write transaction inside a snapshot")
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._begin("BEGIN IMMEDIATE")
            self._depth, self._owner = 1, threading.get_ident()
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                try:
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                if self._audit_appended or self._settings_changed:
                    self._move_anchor()
            finally:
                self._depth, self._owner = 0, None
                self._audit_appended = self._settings_changed = False

    def _move_anchor(self) -> None:
        write_anchor(
            self.path.parent,
            last_event=self.last_audit,
            event_at=self.audit_event,
            settings=self.get_settings,
            settings_changed=self._settings_changed,
        )

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            if self._depth:
                yield
                return
            self._begin("BEGIN DEFERRED")
            self._depth = 1  # owner stays None: a read transaction
            try:
                yield
            finally:
                self._depth = 0
                self._conn.execute("COMMIT")

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0 and self._owner == threading.get_ident()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosedError(f"the registry database {self.path} is closed")

    def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._check_open()
            return list(self._conn.execute(sql, params))

    def _write(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        with self._lock:
            self._require_transaction()
            return self._conn.execute(sql, params).rowcount

    # -- settings ----------------------------------------------------------------------------

    def get_settings(self) -> RegistrySettings | None:
        rows = self._rows("SELECT body FROM settings WHERE id = 1")
        return RegistrySettings.model_validate_json(rows[0]["body"]) if rows else None

    def put_settings(self, settings: RegistrySettings) -> None:
        self._settings_changed = True
        self._write(
            "INSERT OR REPLACE INTO settings (id, body) VALUES (1, ?)",
            (settings.model_dump_json(),),
        )

    # -- components --------------------------------------------------------------------------

    def insert_component(self, record: ComponentRecord) -> None:
        row = convert.component_to_row(record)
        self._write(convert.insert_sql("components", row), row)

    def get_component(self, component_id: str) -> ComponentRecord | None:
        rows = self._rows("SELECT * FROM components WHERE id = ?", (component_id,))
        return convert.component_from_row(rows[0]) if rows else None

    def list_components(
        self,
        *,
        silo: str | None = None,
        status: StatusFilter = "active",
        in_sum: bool | None = None,
    ) -> list[ComponentRecord]:
        status = check_status(status)
        clauses, params = [], []
        if silo is not None:
            clauses.append("silo = ?")
            params.append(silo)
        if status != "all":
            clauses.append("status = ?")
            params.append(status)
        if in_sum is not None:
            clauses.append("in_sum = ?")
            params.append(str(int(in_sum)))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM components {where} ORDER BY silo, round, increment, id"
        return [convert.component_from_row(r) for r in self._rows(sql, params)]

    def count_components(self) -> dict[str, int]:
        row = self._rows(
            """SELECT COALESCE(SUM(status = 'active'), 0) AS active,
                      COALESCE(SUM(status = 'forgotten'), 0) AS forgotten,
                      COALESCE(SUM(status = 'active' AND in_sum = 0), 0) AS pending
               FROM components"""
        )[0]
        return {key: int(row[key]) for key in ("active", "forgotten", "pending")}

    def mark_forgotten(self, component_ids: Iterable[str], at: datetime) -> None:
        for cid in component_ids:
            changed = self._write(
                "UPDATE components SET status = 'forgotten', forgotten_at = ?, in_sum = 0 "
                "WHERE id = ?",
                (convert.ts(at), cid),
            )
            if changed != 1:
                raise NotFoundError(f"component {cid} has no row")

    def mark_in_sum(self, component_ids: Iterable[str]) -> None:
        for cid in component_ids:
            self._write("UPDATE components SET in_sum = 1 WHERE id = ?", (cid,))

    def has_silo(self, silo: str) -> bool:
        return bool(self._rows("SELECT 1 FROM components WHERE silo = ? LIMIT 1", (silo,)))

    # -- tombstones --------------------------------------------------------------------------

    def get_tombstone(self, silo: str) -> SiloTombstone | None:
        rows = self._rows("SELECT body FROM tombstones WHERE silo = ?", (silo,))
        return SiloTombstone.model_validate_json(rows[0]["body"]) if rows else None

    def put_tombstone(self, tombstone: SiloTombstone) -> None:
        self._write(
            "INSERT OR REPLACE INTO tombstones (silo, body) VALUES (?, ?)",
            (tombstone.silo, tombstone.model_dump_json()),
        )

    def list_tombstones(self) -> list[SiloTombstone]:
        rows = self._rows("SELECT body FROM tombstones ORDER BY silo")
        return [SiloTombstone.model_validate_json(r["body"]) for r in rows]

    # -- versions ----------------------------------------------------------------------------

    def insert_version(self, version: ModelVersion) -> None:
        row = convert.version_to_row(version)
        self._write(convert.insert_sql("versions", row), row)
        with self._lock:
            self._conn.executemany(
                "INSERT INTO version_members (version, component_id) VALUES (?, ?)",
                [(version.number, cid) for cid in version.component_ids],
            )

    def _members(self, number: int) -> list[str]:
        rows = self._rows(
            "SELECT component_id FROM version_members WHERE version = ? ORDER BY component_id",
            (number,),
        )
        return [r[0] for r in rows]

    def get_version(self, number: int) -> ModelVersion | None:
        with self.snapshot():
            rows = self._rows("SELECT * FROM versions WHERE number = ?", (number,))
            return convert.version_from_row(rows[0], self._members(number)) if rows else None

    def latest_version(self) -> ModelVersion | None:
        with self.snapshot():
            rows = self._rows("SELECT * FROM versions ORDER BY number DESC LIMIT 1")
            return (
                convert.version_from_row(rows[0], self._members(rows[0]["number"]))
                if rows
                else None
            )

    def list_versions(self) -> list[ModelVersion]:
        with self.snapshot():
            members: dict[int, list[str]] = {}
            for row in self._rows(
                "SELECT version, component_id FROM version_members ORDER BY component_id"
            ):
                members.setdefault(row[0], []).append(row[1])
            rows = self._rows("SELECT * FROM versions ORDER BY number")
            return [convert.version_from_row(r, members.get(r["number"], [])) for r in rows]

    def unpurged_versions_containing(self, component_ids: Iterable[str]) -> list[int]:
        ids, numbers = list(component_ids), set[int]()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = self._rows(
                "SELECT DISTINCT m.version FROM version_members m "
                "JOIN versions v ON v.number = m.version "
                f"WHERE v.purged = 0 AND m.component_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            numbers.update(int(r[0]) for r in rows)
        return sorted(numbers)

    def mark_purged(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            self._write("UPDATE versions SET purged = 1 WHERE number = ?", (number,))

    def referenced_version_blobs(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT blob_sha256 FROM versions WHERE purged = 0")}

    # -- running sum -------------------------------------------------------------------------

    def get_sum_pointer(self) -> SumPointer | None:
        rows = self._rows("SELECT * FROM running_sum WHERE id = 1")
        return convert.pointer_from_row(rows[0]) if rows else None

    def set_sum_pointer(self, pointer: SumPointer) -> None:
        self._write(
            "INSERT OR REPLACE INTO running_sum (id, sha256, count, total_weight, updated_at) "
            "VALUES (1, ?, ?, ?, ?)",
            (
                pointer.sha256,
                pointer.count,
                str(pointer.total_weight),
                convert.ts(pointer.updated_at),
            ),
        )

    # -- audit -------------------------------------------------------------------------------

    def _insert_audit(self, event: AuditEvent) -> None:
        row = convert.audit_to_row(event)
        self._write(convert.insert_sql("audit", row), row)
        self._audit_appended = True

    def audit_event(self, seq: int) -> AuditEvent | None:
        rows = self._rows("SELECT * FROM audit WHERE seq = ?", (seq,))
        return convert.audit_from_row(rows[0]) if rows else None

    def last_audit(self) -> AuditEvent | None:
        rows = self._rows("SELECT * FROM audit ORDER BY seq DESC LIMIT 1")
        return convert.audit_from_row(rows[0]) if rows else None

    def list_audit(
        self, *, after_seq: int | None = None, since: datetime | None = None
    ) -> list[AuditEvent]:
        rows = self._rows(
            "SELECT * FROM audit WHERE seq > ? AND at >= ? ORDER BY seq",
            (after_seq or 0, convert.ts(since) if since is not None else ""),
        )
        return [convert.audit_from_row(r) for r in rows]

    def count_audit(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM audit")[0][0])

    # -- integrity beyond the rows -----------------------------------------------------------

    def integrity_problems(self, settings: RegistrySettings) -> list[str]:
        """The audit anchor against the log and ``settings`` (the row as it is now), and
        the database's triggers and indexes against the schema's."""
        problems = self._schema_problems()
        try:
            anchor = read_anchor(self.path.parent)
        except IntegrityError as exc:  # MissingBlobError included
            return [*problems, f"audit anchor: {exc}"]
        return problems + anchor_problems(
            anchor,
            last=self.last_audit(),
            at_anchor=self.audit_event(anchor.events) if anchor.events else None,
            settings=settings,
        )

    def _schema_problems(self) -> list[str]:
        found = {
            r["name"]: _normalised(r["sql"])
            for r in self._rows(
                "SELECT name, sql FROM sqlite_master WHERE type IN ('trigger', 'index') "
                "AND sql IS NOT NULL"
            )
        }
        problems = []
        for name, sql in sorted(convert.schema_objects().items()):
            if name not in found:
                problems.append(f"database: {name} is missing (dropped outside the registry)")
            elif found[name] != _normalised(sql):
                problems.append(f"database: {name} is not the schema's (replaced)")
        return problems


def _normalised(sql: str) -> str:
    # SQLite keeps a CREATE statement's text without its IF NOT EXISTS.
    return " ".join(sql.replace("IF NOT EXISTS ", "").split())
