"""Admission state in the registry, against both stores: tombstones (forgetting is
permanent until readmission), what a silo has contributed, the partition, θ0 and the data
spec kept in the registry, and the upgrade of a schema-1 database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from tests.server.registry.registry_helpers import make_base, make_component
from tmc.common.data import DataSpec, InputSpec, PartitionSpec
from tmc.common.errors import IntegrityError, NotFoundError
from tmc.common.federation import PartitionRecord
from tmc.common.hashing import tensors_sha256
from tmc.server.registry import (
    BaseRecord,
    ForgottenSiloError,
    Registry,
    RegistryMismatchError,
)
from tmc.server.registry.entities import SCHEMA_VERSION

DATA = DataSpec(classes=("cat", "dog"), input=InputSpec(channels=3, size=8))


def test_a_forgotten_silo_stays_forgotten_until_readmitted(registry: Registry) -> None:
    registry.add(make_component("silo-a", 1))
    registry.add(make_component("silo-b", 2))
    registry.commit_version()
    registry.forget(silo="silo-a", actor="operator", reason="withdrew consent")
    tombstone = registry.tombstone("silo-a")
    assert tombstone is not None
    assert tombstone.refusal().startswith("forgotten on ")
    assert tombstone.refusal().endswith(": withdrew consent")
    with pytest.raises(ForgottenSiloError, match="withdrew consent"):
        registry.add(make_component("silo-a", 3, increment=1))
    assert registry.status().tombstoned == 1
    summary = {s.silo: s for s in registry.silos()}["silo-a"]
    assert summary.forgotten_reason == "withdrew consent"
    assert summary.forgotten_on == tombstone.forgotten_at

    lifted = registry.readmit("silo-a", actor="operator", reason="consent renewed")
    assert lifted.readmitted_at is not None
    assert registry.tombstone("silo-a") is None
    registry.add(make_component("silo-a", 3, increment=1))
    actions = [e.action for e in registry.audit_log()]
    assert actions.count("readmit") == 1
    with pytest.raises(NotFoundError, match="not forgotten"):
        registry.readmit("silo-a", actor="operator")
    with pytest.raises(NotFoundError):
        registry.readmit("never-seen", actor="operator")


def test_contributed_increments_reset_on_readmission(registry: Registry) -> None:
    for increment in range(3):
        registry.add(make_component("silo-a", 10 + increment, increment=increment))
    registry.commit_version()
    one = next(r for r in registry.list_components() if r.increment == 1)
    registry.forget(component_id=one.id, actor="operator", reason="bad scan")
    assert set(registry.contributed_increments("silo-a")) == {0, 1, 2}, "not retrained"
    assert registry.tombstone("silo-a") is None, "forgetting one component is no tombstone"
    registry.forget(silo="silo-a", actor="operator")
    registry.readmit("silo-a", actor="operator")
    assert registry.contributed_increments("silo-a") == {}, "a readmitted silo starts over"


def test_the_first_partition_is_recorded_and_others_refused(registry: Registry) -> None:
    three = PartitionRecord(
        identity="digits:train", partition=PartitionSpec(split="class", num_silos=3)
    )
    registry.check_partition(three, silo="silo-0", actor="server")
    registry.check_partition(three, silo="silo-1", actor="server")
    assert registry.settings.partition == three
    four = three.model_copy(update={"partition": PartitionSpec(split="iid", num_silos=4)})
    with pytest.raises(RegistryMismatchError, match="split: 'class' vs 'iid'; num-silos: 3 vs 4"):
        registry.check_partition(four, silo="silo-3", actor="server")
    assert [e.action for e in registry.audit_log()].count("settings") == 1


def _theta0() -> tuple[BaseRecord, dict[str, torch.Tensor]]:
    state = {"a": torch.arange(32.0).view(8, 4), "b": torch.ones(16), "bn.mean": torch.zeros(3)}
    return make_base(sha=tensors_sha256(state)), state


def test_the_registry_keeps_theta0_and_the_data_spec(root: Path) -> None:
    base, state = _theta0()
    with Registry.create(root, base=base, theta0=state, data=DATA) as registry:
        assert all(torch.equal(registry.theta0()[k], v) for k, v in state.items())
        assert registry.settings.data == DATA
    other = DataSpec(classes=("cat", "cow"), input=DATA.input)
    with pytest.raises(RegistryMismatchError, match="classes"):
        Registry.open_or_create(root, base=base, data=other)
    path = root / "base" / f"{base.sha256}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with Registry.open(root) as registry:
        with pytest.raises(IntegrityError, match="θ0 file"):
            registry.theta0()
        assert any("θ0" in p for p in registry.verify().problems)


def test_theta0_that_is_not_the_base_is_refused(root: Path) -> None:
    base, state = _theta0()
    state["a"] = state["a"] + 1
    with pytest.raises(IntegrityError, match="not stored"):
        Registry.create(root, base=base, theta0=state)


def test_a_schema_1_registry_is_upgraded_and_completed(root: Path) -> None:
    base, state = _theta0()
    with Registry.create(root, base=base, store="sqlite") as registry:
        registry.add(make_component("silo-a", 1, base_sha=base.sha256))
        registry.add(make_component("silo-b", 2, base_sha=base.sha256))
        registry.commit_version()
        registry.forget(silo="silo-a", actor="operator", reason="old request")
    # Make it the database an earlier release wrote: no tombstones table, no upload columns,
    # user_version 1.
    with sqlite3.connect(root / "registry.db") as db:
        db.execute("DROP TABLE tombstones")
        db.execute("ALTER TABLE components DROP COLUMN encoding")
        db.execute("ALTER TABLE components DROP COLUMN payload_bytes")
        db.execute("ALTER TABLE components DROP COLUMN privacy")
        db.execute("PRAGMA user_version = 1")
    with Registry.open_or_create(root, base=base, theta0=state, data=DATA) as registry:
        tombstone = registry.tombstone("silo-a")
        assert tombstone is not None, "a silo forgotten before v2 stays forgotten"
        assert tombstone.reason == "old request"
        assert registry.settings.data == DATA
        assert registry.blobs.has_theta0()
        assert registry.verify().ok
    with sqlite3.connect(root / "registry.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
