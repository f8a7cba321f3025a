"""Crash safety of the registry: a process committing and forgetting is killed (SIGKILL)
at many random points; a disk that refuses writes. After each, the registry reopens with
every acknowledged component present and intact, no partial file, no forgotten component
back, and ``verify`` passing."""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.crash_worker import churn
from tests.server.registry.registry_helpers import make_base, make_component
from tmc.common.components import compose
from tmc.server.registry import Registry, StorageError

KILLS = 12


def _read_acks(path: Path) -> tuple[dict[str, str], set[str], str | None]:
    """Acknowledged adds (id → silo), acknowledged forgotten ids, and the silo of the last
    acknowledged add (the only silo an unacknowledged, in-flight forget can have hit)."""
    added: dict[str, str] = {}
    forgotten: set[str] = set()
    last_silo: str | None = None
    if not path.exists():
        return added, forgotten, last_silo
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "add" and len(parts) == 3:
            added[parts[1]] = parts[2]
            last_silo = parts[2]
        elif parts and parts[0] == "forget":
            forgotten.update(parts[2:])
    return added, forgotten, last_silo


def _check(root: Path, acks: Path, seen_forgotten: set[str]) -> None:
    added, forgotten, in_flight_silo = _read_acks(acks)
    forgotten |= seen_forgotten
    with Registry.open(root) as registry:
        report = registry.verify()
        assert report.clean, (report.problems, report.garbage)
        records = {r.id: r for r in registry.list_components(status="all")}
        for component_id, silo in added.items():
            record = records.get(component_id)
            assert record is not None, f"acknowledged component {component_id[:12]} lost"
            assert record.silo == silo
            if record.status == "forgotten" and component_id not in forgotten:
                # killed after the forget committed, before it was acknowledged
                assert silo == in_flight_silo, f"{component_id[:12]} forgotten unasked"
                seen_forgotten.add(component_id)
            elif component_id in forgotten:
                assert record.status == "forgotten", "a forgotten component came back"
                assert not registry.blobs.has_component(component_id)
            else:
                assert record.status == "active"
                assert registry.get_component(component_id).id == component_id  # intact
        leftovers = [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
        assert not leftovers, leftovers
        active = [registry.get_component(r.id) for r in registry.list_components()]
        if active:
            registry.commit_version(reason="after crash")
            assert registry.composed_delta().equal(compose(active))


@pytest.mark.integration
def test_killed_at_random_points_the_registry_keeps_every_acknowledged_change(
    tmp_path: Path,
) -> None:
    root = tmp_path / "registry"
    acks = tmp_path / "acks.log"
    Registry.create(root, base=make_base()).close()
    context = multiprocessing.get_context("spawn")
    rng = random.Random(20261127)
    seen_forgotten: set[str] = set()
    for kill in range(KILLS):
        start_lines = len(acks.read_text().splitlines()) if acks.exists() else 0
        process = context.Process(target=churn, args=(str(root), str(acks), kill))
        process.start()
        try:
            deadline = time.monotonic() + 60
            # Let it get going (at least one acknowledgement), then kill it anywhere.
            while (len(acks.read_text().splitlines()) if acks.exists() else 0) <= start_lines:
                assert process.is_alive(), "worker died on its own"
                assert time.monotonic() < deadline, "worker stalled"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
            process.join(timeout=30)
        _check(root, acks, seen_forgotten)
    added, _, _ = _read_acks(acks)
    assert len(added) >= KILLS


def test_a_disk_that_refuses_writes_gives_a_clear_error_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "registry"
    with Registry.create(root, base=make_base()) as registry:
        kept = [make_component("a", 1), make_component("b", 2)]
        for component in kept:
            registry.add(component)
        version = registry.commit_version()
        audit = registry.audit_log()

        def full_disk(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full_disk)
        with pytest.raises(StorageError, match=r"No space left on device.*unchanged"):
            registry.add(make_component("c", 3))
        with pytest.raises(StorageError, match="No space left"):
            registry.forget(silo="a", actor="test")
        monkeypatch.undo()
        assert registry.current_version() == version
        assert {r.id for r in registry.list_components()} == {c.id for c in kept}
        assert registry.audit_log() == audit
        report = registry.verify()
        assert report.clean, (report.problems, report.garbage)
        assert registry.composed_delta().equal(compose(kept))
