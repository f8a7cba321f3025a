"""The metadata store contract, run against both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.server.registry.registry_helpers import make_base
from tmc.common.errors import RegistryError
from tmc.server.registry import (
    ComponentRecord,
    MemoryMetadataStore,
    MetadataStore,
    ModelVersion,
    RegistrySettings,
    SQLiteMetadataStore,
)
from tmc.server.registry.entities import GENESIS_CHAIN, AuditDraft, SumPointer, chain_hash
from tmc.server.registry.errors import RegistryClosedError

AT = datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    backend: MetadataStore = (
        SQLiteMetadataStore(tmp_path / "registry.db", create=True)
        if request.param == "sqlite"
        else MemoryMetadataStore()
    )
    yield backend
    backend.close()


def _record(cid: str, silo: str, *, round: int = 0, increment: int = 0) -> ComponentRecord:
    return ComponentRecord(
        id=cid * 64,
        silo=silo,
        round=round,
        increment=increment,
        num_examples=5,
        classes=(2, 1),
        metrics={"acc": 0.5},
        norm=1.5,
        blob_sha256="f" * 64,
        created_at=AT,
        added_at=AT,
        actor="test",
    )


def _version(number: int, ids: list[str]) -> ModelVersion:
    return ModelVersion(
        number=number,
        component_ids=tuple(c * 64 for c in ids),
        weighting="uniform",
        delta_sha256="a" * 64,
        blob_sha256=f"{number:x}" * 64,
        created_at=AT,
    )


def test_rows_round_trip_and_are_ordered(store: MetadataStore) -> None:
    records = [
        _record("c", "b-silo"),
        _record("a", "b-silo", round=1, increment=3),
        _record("b", "a-silo", increment=2),
        _record("d", "a-silo", increment=1),
    ]
    with store.transaction():
        for record in records:
            store.insert_component(record)
    listed = store.list_components()
    assert [r.id[0] for r in listed] == ["d", "b", "c", "a"]
    assert store.get_component("c" * 64) == records[0]
    assert store.get_component("e" * 64) is None
    assert store.count_components() == {"active": 4, "forgotten": 0, "pending": 4}
    with store.transaction():
        store.mark_in_sum(["a" * 64, "b" * 64])
        store.mark_forgotten(["c" * 64], AT)
    assert [r.id[0] for r in store.list_components(in_sum=True)] == ["b", "a"]
    forgotten = store.list_components(status="forgotten")
    assert [r.id[0] for r in forgotten] == ["c"]
    assert forgotten[0].forgotten_at == AT
    assert store.count_components() == {"active": 3, "forgotten": 1, "pending": 1}
    assert store.has_silo("b-silo")
    assert not store.has_silo("c-silo")
    summaries = store.silo_summaries()
    assert [(s.silo, s.active, s.forgotten) for s in summaries] == [
        ("a-silo", 2, 0),
        ("b-silo", 1, 1),
    ]
    with pytest.raises(RegistryError, match="unknown component status"):
        store.list_components(status="gone")  # type: ignore[arg-type]


def test_a_failed_transaction_changes_nothing(store: MetadataStore) -> None:
    with store.transaction():
        store.insert_component(_record("a", "s"))
        store.append_audit(AuditDraft(actor="t", action="add"))
    pointer = SumPointer(sha256="b" * 64, count=1, total_weight=2**70)

    def doomed() -> None:
        with store.transaction():
            store.insert_component(_record("b", "s", increment=1))
            store.mark_forgotten(["a" * 64], AT)
            store.insert_version(_version(1, ["a", "b"]))
            store.set_sum_pointer(pointer)
            store.append_audit(AuditDraft(actor="t", action="version"))
            with store.transaction():  # nested: joins the outer transaction
                store.mark_purged([1])
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        doomed()
    assert [r.id[0] for r in store.list_components(status="all")] == ["a"]
    assert store.get_component("a" * 64).status == "active"  # type: ignore[union-attr]
    assert store.list_versions() == []
    assert store.get_sum_pointer() is None
    assert store.count_audit() == 1
    with store.transaction():
        store.set_sum_pointer(pointer)
    assert store.get_sum_pointer() == pointer  # total weight beyond int64 survives


def test_writes_need_a_transaction(store: MetadataStore) -> None:
    with pytest.raises(RegistryError, match="inside transaction"):
        store.insert_component(_record("a", "s"))
    with pytest.raises(RegistryError, match="inside transaction"):
        store.append_audit(AuditDraft(actor="t", action="add"))
    assert store.list_components(status="all") == []


def test_versions_and_purging(store: MetadataStore) -> None:
    with store.transaction():
        store.insert_version(_version(1, ["a"]))
        store.insert_version(_version(2, ["a", "b"]))
        store.insert_version(_version(3, ["b", "c"]))
    assert store.latest_version() == _version(3, ["b", "c"])
    assert store.get_version(2) == _version(2, ["a", "b"])
    assert store.get_version(9) is None
    assert store.unpurged_versions_containing(["b" * 64]) == [2, 3]
    with store.transaction():
        store.mark_purged([2])
    assert store.unpurged_versions_containing(["a" * 64, "b" * 64]) == [1, 3]
    assert [v.purged for v in store.list_versions()] == [False, True, False]
    assert store.referenced_version_blobs() == {"1" * 64, "3" * 64}


def test_audit_events_are_numbered_and_chained(store: MetadataStore) -> None:
    with store.transaction():
        first = store.append_audit(AuditDraft(actor="a", action="create", at=AT))
        second = store.append_audit(
            AuditDraft(
                actor="b",
                action="add",
                silo="s",
                component_id="c" * 64,
                details={"n": 1, "x": [1.5, None, "y"]},
                hashes={"blob": "d" * 64},
            )
        )
    assert (first.seq, second.seq) == (1, 2)
    assert first.chain_sha256 == chain_hash(GENESIS_CHAIN, first)
    assert second.chain_sha256 == chain_hash(first.chain_sha256, second)
    assert store.list_audit() == [first, second]
    assert store.list_audit(after_seq=1) == [second]
    assert store.list_audit(since=second.at) == [second]
    local = second.at.astimezone(timezone(timedelta(hours=-5)))  # same instant, other zone
    assert store.list_audit(since=local) == [second]
    assert store.last_audit() == second
    assert store.count_audit() == 2


def test_settings_and_close(store: MetadataStore) -> None:
    assert store.get_settings() is None
    settings = RegistrySettings(base=make_base(), weighting="num-examples", max_norm=3.0)
    with store.transaction():
        store.put_settings(settings)
    assert store.get_settings() == settings
    store.close()
    with pytest.raises(RegistryClosedError), store.transaction():
        pass
