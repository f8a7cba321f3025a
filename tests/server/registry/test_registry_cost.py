"""Costs checked by counting blob I/O, not by timing: forgetting and committing touch only
the components they change (plus the accumulator), whatever the number already summed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.registry.registry_helpers import make_component, make_components
from tmc.common.components import Component, compose
from tmc.server.registry import BaseRecord, BlobStore, Registry
from tmc.server.registry.entities import StoreKind


def _spy_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    original = BlobStore.read_component

    def spy(self: BlobStore, component_id: str, blob_sha256: str) -> Component:
        read.append(component_id)
        return original(self, component_id, blob_sha256)

    monkeypatch.setattr(BlobStore, "read_component", spy)
    return read


@pytest.mark.parametrize("silos", [3, 12])
def test_forget_reads_only_the_removed_components(
    tmp_path: Path,
    base: BaseRecord,
    store_kind: StoreKind,
    silos: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    components = make_components(silos, 2)
    with Registry.create(tmp_path / "r", base=base, store=store_kind) as registry:
        for component in components:
            registry.add(component)
        registry.commit_version()
        read = _spy_reads(monkeypatch)
        registry.blobs.counts.clear()

        result = registry.forget(silo="silo-1", actor="admin")

        assert sorted(read) == sorted(result.removed)
        assert len(read) == 2
        counts = dict(registry.blobs.counts)
        assert counts == {
            "component_reads": 2,
            "sum_reads": 1,
            "sum_writes": 1,
            "version_writes": 1,
        }
        rest = [c for c in components if c.meta.silo != "silo-1"]
        assert registry.composed_delta().equal(compose(rest))


@pytest.mark.parametrize("already", [2, 20])
def test_commit_reads_only_the_new_components(
    tmp_path: Path,
    base: BaseRecord,
    store_kind: StoreKind,
    already: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Registry.create(tmp_path / "r", base=base, store=store_kind) as registry:
        for i in range(already):
            registry.add(make_component(f"silo-{i}", i))
        registry.commit_version()
        new = [make_component("late", 500), make_component("late", 501, increment=1)]
        read = _spy_reads(monkeypatch)
        registry.blobs.counts.clear()
        for component in new:
            registry.add(component)
        assert read == []
        assert registry.blobs.counts["component_writes"] == 2
        registry.commit_version()
        assert sorted(read) == sorted(c.id for c in new)
        assert registry.blobs.counts["sum_reads"] == 1


def test_what_if_compose_reads_only_the_excluded_silo(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    components = make_components(5, 2)
    for component in components:
        registry.add(component)
    registry.commit_version()
    read = _spy_reads(monkeypatch)
    registry.compose(exclude_silos=["silo-3"])
    assert sorted(read) == sorted(c.id for c in components if c.meta.silo == "silo-3")
    read.clear()
    registry.export_bytes()
    assert read == []
