"""One run per registry: the run lock refuses a second run naming the holder and is
released when the holder dies; the registry itself refuses a second active component for
the same (silo, increment)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.server.federation.fake_grid import FakeGrid
from tests.server.registry.registry_helpers import make_component
from tests.server.registry.run_lock_helpers import holder_process
from tmc.common.federation.config import FederationConfig
from tmc.server.federation import run_federation
from tmc.server.registry import (
    DuplicateContributionError,
    Registry,
    RegistryBusyError,
    run_lock,
)


def test_a_second_run_is_refused_naming_the_holder_until_the_holder_dies(root: Path) -> None:
    with holder_process(root) as holder:
        with pytest.raises(RegistryBusyError) as refused, run_lock(root):
            pytest.fail("a second run got the lock")
        message = str(refused.value)
        assert f"pid {holder.pid} on " in message
        assert "running 'tmc simulate --registry first'" in message
        assert "since 20" in message
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with run_lock(root, command="second") as mine:  # the kernel released the dead holder's
        assert mine.command == "second"


def test_the_server_run_is_refused_while_another_run_holds_the_registry(
    tmp_path: Path,
) -> None:
    root = tmp_path / "registry"
    config = FederationConfig.from_run_config({"registry": str(root), "num-silos": 1})
    with holder_process(root) as holder, pytest.raises(RegistryBusyError, match=str(holder.pid)):
        run_federation(FakeGrid(), config, run_id=1)
    assert not (root / "registry.db").exists()  # refused before anything was opened


def test_the_registry_refuses_a_second_active_component_for_an_increment(
    registry: Registry,
) -> None:
    first = registry.add(make_component("silo-a", 1, increment=0))
    with pytest.raises(DuplicateContributionError, match="increment 0"):
        registry.add(make_component("silo-a", 2, increment=0))
    registry.add(make_component("silo-a", 3, increment=1))
    registry.forget(component_id=first.id, actor="operator", reason="retrain it")
    registry.add(make_component("silo-a", 4, increment=0))  # a forgotten one may be replaced
    active = registry.list_components(silo="silo-a")
    assert sorted(r.increment for r in active) == [0, 1]


def test_the_database_refuses_a_duplicate_written_behind_the_registrys_back(
    sqlite_registry: Registry, root: Path
) -> None:
    record = sqlite_registry.add(make_component("silo-a", 1))
    sqlite_registry.close()
    with sqlite3.connect(root / "registry.db") as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(components)")]
        row = dict(zip(columns, db.execute("SELECT * FROM components").fetchone(), strict=True))
        row["id"] = "9" * 64
        names = ", ".join(row)
        with pytest.raises(sqlite3.IntegrityError, match="one active component per silo"):
            db.execute(
                f"INSERT INTO components ({names}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
    assert record.increment == 0
