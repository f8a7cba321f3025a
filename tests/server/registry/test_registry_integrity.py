"""verify(), recover(), crash consistency, permissions and the append-only audit log."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.server.registry.registry_helpers import make_component, make_components
from tmc.common.components import Component, component_to_bytes, compose
from tmc.common.errors import IntegrityError
from tmc.server.registry import BaseRecord, Registry
from tmc.server.registry.sqlite import DB_FILENAME
from tmc.server.registry.summing import Composer


def _filled(registry: Registry) -> list[Component]:
    components = make_components(2, 3)
    for component in components:
        registry.add(component)
    registry.commit_version()
    return components


def _flip_byte(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(data))


def test_verify_passes_on_a_healthy_registry(registry: Registry) -> None:
    _filled(registry)
    registry.forget(silo="silo-0", actor="admin")
    report = registry.verify()
    assert report.ok, report.problems
    assert report.clean, report.garbage
    assert report.components_checked == 3
    assert report.versions_checked == 2
    assert report.audit_events_checked == len(registry.audit_log()) - 1
    assert registry.audit_log()[-1].action == "verify"


def test_verify_reports_a_tampered_component_blob(registry: Registry) -> None:
    components = _filled(registry)
    victim = components[2]
    path = registry.blobs.component_path(victim.id)
    _flip_byte(path)
    report = registry.verify()
    assert not report.ok
    assert any(victim.id[:12] in p and "altered" in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match=registry.blobs.relative(path)):
        registry.get_component(victim.id)


def test_verify_reports_a_missing_blob(registry: Registry) -> None:
    components = _filled(registry)
    registry.blobs.component_path(components[0].id).unlink()
    report = registry.verify()
    assert not report.ok
    assert any("missing" in p and components[0].id[:12] in p for p in report.problems)


def test_verify_reports_a_tampered_running_sum_and_version(registry: Registry) -> None:
    _filled(registry)
    pointer = registry.store.get_sum_pointer()
    version = registry.current_version()
    assert pointer is not None
    assert version is not None
    _flip_byte(registry.blobs.sum_path(pointer.sha256))
    _flip_byte(registry.blobs.version_path(version.blob_sha256))
    report = registry.verify()
    assert any(p.startswith("running sum") for p in report.problems), report.problems
    assert any(p.startswith(f"version {version.number}") for p in report.problems)
    with pytest.raises(IntegrityError):
        registry.composed_delta()


def test_verify_reports_a_forgotten_blob_that_came_back(registry: Registry) -> None:
    components = _filled(registry)
    victim = components[0]
    path = registry.blobs.component_path(victim.id)
    saved = path.read_bytes()
    registry.forget(component_id=victim.id, actor="admin")
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(saved)
    report = registry.verify()
    assert any("forgotten component" in p for p in report.problems)
    assert registry.recover() == [registry.blobs.relative(path)]
    assert registry.verify().clean


def test_recover_removes_orphans_and_temp_files(registry: Registry) -> None:
    components = _filled(registry)
    blobs = registry.blobs
    orphan = make_component("ghost", 99)
    blobs.write_component(orphan.id, component_to_bytes(orphan))  # a blob without a row
    temp = blobs.root / "blobs" / ".x.safetensors.abc.tmp"
    temp.write_bytes(b"partial")
    misplaced = blobs.root / "blobs" / "zz" / f"{components[0].id}.safetensors"
    misplaced.parent.mkdir()
    misplaced.write_bytes(b"copy")
    stale_sum = blobs.root / "sums" / f"{'e' * 64}.safetensors"
    stale_sum.write_bytes(b"old")
    stale_version = blobs.root / "versions" / f"{'d' * 64}.safetensors"
    stale_version.write_bytes(b"old")

    report = registry.verify()
    assert report.ok
    assert not report.clean
    expected = sorted(
        blobs.relative(p)
        for p in (blobs.component_path(orphan.id), temp, misplaced, stale_sum, stale_version)
    )
    assert report.garbage == expected
    assert registry.recover() == expected
    event = registry.audit_log()[-1]
    assert event.action == "recover"
    assert event.details["count"] == 5
    assert registry.verify().clean
    assert registry.recover() == []  # nothing left: no second event
    assert registry.audit_log()[-1].action == "verify"


def test_open_recovers_after_a_crash_between_commit_and_cleanup(
    root: Path, base: BaseRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Registry.create(root, base=base) as registry:
        components = _filled(registry)
        old_pointer = registry.store.get_sum_pointer()
        # Simulate a process killed right after the forget committed: no cleanup ran.
        monkeypatch.setattr(Composer, "collect", lambda self, garbage: None)
        result = registry.forget(silo="silo-1", actor="admin")
        assert all(registry.blobs.has_component(cid) for cid in result.removed)
        assert not registry.verify().ok
        monkeypatch.undo()
    with Registry.open(root) as registry:
        assert not any(registry.blobs.has_component(cid) for cid in result.removed)
        assert old_pointer is not None
        assert not registry.blobs.sum_path(old_pointer.sha256).exists()
        recover = [e for e in registry.audit_log() if e.action == "recover"]
        assert len(recover) == 1
        assert recover[0].details["count"] == len(result.removed) + 2
        rest = [c for c in components if c.meta.silo != "silo-1"]
        assert registry.composed_delta().equal(compose(rest))
        assert registry.verify().clean


def test_a_failed_add_writes_nothing(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    component = make_component("alpha", 1)
    events = registry.audit_log()

    def boom(record: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(registry.store, "insert_component", boom)
    with pytest.raises(OSError, match="disk full"):
        registry.add(component)
    monkeypatch.undo()
    assert registry.list_components(status="all") == []
    assert not registry.blobs.has_component(component.id)
    assert registry.audit_log() == events
    registry.add(component)
    assert registry.verify().clean


def test_a_failed_commit_changes_nothing(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    components = _filled(registry)
    extra = make_component("silo-9", 9)
    registry.add(extra)
    before_files = sorted(registry.blobs.file_modes())
    before_version, before_pointer = registry.current_version(), registry.store.get_sum_pointer()

    def boom(version: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(registry.store, "insert_version", boom)
    with pytest.raises(RuntimeError, match="power cut"):
        registry.forget(silo="silo-0", actor="admin")
    with pytest.raises(RuntimeError, match="power cut"):
        registry.commit_version()
    monkeypatch.undo()
    assert sorted(registry.blobs.file_modes()) == before_files
    assert registry.current_version() == before_version
    assert registry.store.get_sum_pointer() == before_pointer
    assert registry.status().pending == 1
    assert registry.status().forgotten == 0
    assert registry.verify().clean
    registry.forget(silo="silo-0", actor="admin")
    rest = [c for c in [*components, extra] if c.meta.silo != "silo-0"]
    assert registry.composed_delta().equal(compose(rest))


def test_files_are_private(registry: Registry) -> None:
    _filled(registry)
    registry.forget(silo="silo-0", actor="admin")
    root = registry.root
    assert root.stat().st_mode & 0o777 == 0o700
    modes = registry.blobs.file_modes()
    assert modes, "the registry holds files"
    for relative, mode in modes.items():
        expected = 0o700 if (root / relative).is_dir() else 0o600
        assert mode == expected, f"{relative}: {oct(mode)}"
    if registry.store.kind == "sqlite":
        assert (root / f"{DB_FILENAME}-wal").exists()  # open: the WAL files exist, private too
        assert modes[f"{DB_FILENAME}-wal"] == 0o600
        assert modes[DB_FILENAME] == 0o600


def test_audit_table_is_append_only(sqlite_registry: Registry) -> None:
    sqlite_registry.add(make_component("alpha", 1))
    connection = sqlite3.connect(sqlite_registry.root / DB_FILENAME)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("UPDATE audit SET actor = 'someone else'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("DELETE FROM audit")
        connection.rollback()
        # Even with the triggers dropped (direct file access), the chain shows the edit.
        connection.execute("DROP TRIGGER audit_no_update")
        connection.execute("UPDATE audit SET actor = 'someone else' WHERE seq = 1")
        connection.commit()
    finally:
        connection.close()
    report = sqlite_registry.verify()
    assert any("audit log: event 1" in p for p in report.problems), report.problems


def test_audit_export(registry: Registry, tmp_path: Path) -> None:
    _filled(registry)
    registry.reject(silo="x", round=1, reason='bad, "quoted"\nreason')
    registry.forget(silo="silo-0", actor="admin", reason="request #12")
    events = registry.audit_log()
    assert registry.export_audit(tmp_path / "audit.json", "json") == len(events)
    loaded = json.loads((tmp_path / "audit.json").read_text())
    assert [e["seq"] for e in loaded] == [e.seq for e in events]
    assert loaded[-1]["hashes"] == events[-1].hashes
    registry.export_audit(tmp_path / "audit.csv", "csv")
    with (tmp_path / "audit.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["action"] for r in rows] == [e.action for e in events]
    reject = next(r for r in rows if r["action"] == "reject")
    assert json.loads(reject["details"])["reason"] == 'bad, "quoted"\nreason'
    assert (tmp_path / "audit.csv").stat().st_mode & 0o777 == 0o600


def test_forgotten_versions_leave_no_blob_behind(registry: Registry) -> None:
    components = _filled(registry)
    registry.forget(silo="silo-0", actor="admin")
    registry.forget(silo="silo-1", actor="admin")
    assert registry.blobs.list_components() == []
    live = {v.blob_sha256 for v in registry.versions() if not v.purged}
    assert set(registry.blobs.list_versions()) == live
    assert len(registry.blobs.list_sums()) == 1
    assert all(not registry.blobs.has_component(c.id) for c in components)
    shutil.rmtree(registry.root / "versions")
    assert not registry.verify().ok


def test_a_failed_cleanup_does_not_undo_the_forget(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    components = _filled(registry)

    def locked(self: Composer, garbage: object) -> None:
        raise OSError("busy disk")

    monkeypatch.setattr(Composer, "collect", locked)
    result = registry.forget(silo="silo-0", actor="admin")
    monkeypatch.undo()
    rest = [c for c in components if c.meta.silo != "silo-0"]
    assert registry.composed_delta().equal(compose(rest))
    assert any("forgotten component" in p for p in registry.verify().problems)
    removed = registry.recover()
    assert {
        registry.blobs.relative(registry.blobs.component_path(c)) for c in result.removed
    } <= set(removed)
    assert registry.verify().clean
