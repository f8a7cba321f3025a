"""Versions, exact forgetting and byte-identical exports."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.server.registry.registry_helpers import (
    BASE_SHA,
    SHAPES,
    make_component,
    make_components,
)
from tmc.common.components import Component, Delta, compose
from tmc.common.errors import NotFoundError, RegistryError
from tmc.common.hashing import tensors_sha256
from tmc.server.registry import COMPOSITION_KEY, BaseRecord, Registry, read_composition
from tmc.server.registry.blobs import safetensors_metadata
from tmc.server.registry.entities import StoreKind


def _add_all(registry: Registry, components: list[Component]) -> None:
    for component in components:
        registry.add(component)


def test_commit_version_is_the_exact_composition(registry: Registry) -> None:
    components = make_components(3, 3)
    _add_all(registry, components)
    version = registry.commit_version(round=1, reason="round 1", actor="server")
    assert version.number == 1
    assert version.round == 1
    assert version.reason == "round 1"
    assert version.component_ids == tuple(sorted(c.id for c in components))
    expected = compose(components, "uniform")
    composed = registry.composed_delta()
    assert composed.equal(expected)
    assert version.delta_sha256 == tensors_sha256(expected)
    assert registry.composed_delta(1).equal(expected)
    assert registry.status().pending == 0
    assert all(r.in_sum for r in registry.list_components())
    event = registry.audit_log()[-1]
    assert event.action == "version"
    assert event.hashes["delta"] == version.delta_sha256


@pytest.mark.parametrize("weighting", ["uniform", "num-examples"])
def test_versions_follow_additions_incrementally(
    root: Path, base: BaseRecord, store_kind: StoreKind, weighting: str
) -> None:
    components = make_components(2, 4)
    with Registry.create(root, base=base, store=store_kind, weighting=weighting) as registry:  # type: ignore[arg-type]
        for i, component in enumerate(components, start=1):
            registry.add(component)
            version = registry.commit_version(round=i)
            assert version.number == i
            expected = compose(components[:i], weighting)  # type: ignore[arg-type]
            assert registry.composed_delta().equal(expected)
        assert [v.number for v in registry.versions()] == list(range(1, len(components) + 1))
        assert registry.verify().clean


def test_commit_without_changes_returns_the_current_version(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="nothing to commit"):
        registry.commit_version()
    registry.add(make_component("alpha", 1))
    first = registry.commit_version()
    assert registry.commit_version(round=9) == first
    registry.add(make_component("alpha", 1))  # idempotent: still nothing new
    assert registry.commit_version() == first
    assert len(registry.versions()) == 1


def test_arrival_order_is_irrelevant(
    tmp_path: Path, base: BaseRecord, store_kind: StoreKind
) -> None:
    components = make_components(3, 4)
    versions, exports, without = [], [], []
    for trial in range(3):
        order = components[:]
        random.Random(trial).shuffle(order)
        root = tmp_path / f"r{trial}"
        with Registry.create(root, base=base, store=store_kind) as registry:
            # Commit at different points: the final version must not care.
            for i, component in enumerate(order):
                registry.add(component)
                if i % (trial + 2) == 0:
                    registry.commit_version()
            version = registry.commit_version()
            versions.append(registry.version_bytes())
            exports.append(registry.export_bytes())
            without.append(registry.export_bytes(exclude_silos=["silo-1"]))
            assert version.component_ids == tuple(sorted(c.id for c in components))
    assert versions[0] == versions[1] == versions[2]
    assert exports[0] == exports[1] == exports[2] == versions[0]
    assert without[0] == without[1] == without[2]


def test_forget_silo_equals_composing_the_rest(registry: Registry) -> None:
    components = make_components(3, 3)
    _add_all(registry, components)
    registry.commit_version()
    rest = [c for c in components if c.meta.silo != "silo-1"]
    export_without = registry.export_bytes(exclude_silos=["silo-1"])
    compose_without = registry.compose(exclude_silos=["silo-1"])

    result = registry.forget(silo="silo-1", actor="admin", reason="silo left the federation")

    assert result.removed == tuple(sorted(c.id for c in components if c.meta.silo == "silo-1"))
    assert result.version.number == 2
    assert result.version.reason == "silo left the federation"
    assert result.version.component_ids == tuple(sorted(c.id for c in rest))
    expected = compose(rest, "uniform")
    assert registry.composed_delta().equal(expected)
    assert compose_without.equal(expected)
    assert registry.export_bytes() == export_without
    assert registry.version_bytes() == export_without
    for cid in result.removed:
        assert not registry.blobs.has_component(cid)
        assert registry.component_record(cid).status == "forgotten"
    forgets = [e for e in registry.audit_log() if e.action == "forget"]
    assert sorted(e.component_id or "" for e in forgets) == list(result.removed)
    assert {e.actor for e in forgets} == {"admin"}
    assert registry.verify().clean


def test_forget_one_component_equals_composing_the_rest(registry: Registry) -> None:
    components = make_components(2, 3)
    _add_all(registry, components)
    registry.commit_version()
    victim = components[4]
    result = registry.forget(component_id=victim.id, actor="admin")
    assert result.removed == (victim.id,)
    rest = [c for c in components if c.id != victim.id]
    assert registry.composed_delta().equal(compose(rest))
    assert registry.list_components(status="forgotten")[0].id == victim.id
    # Repeating the request is a no-op.
    again = registry.forget(component_id=victim.id, actor="admin")
    assert again.removed == ()
    assert again.version == result.version


def test_forget_after_reopening_is_still_exact(root: Path, base: BaseRecord) -> None:
    components = make_components(3, 2)
    with Registry.create(root, base=base) as registry:
        _add_all(registry, components)
        registry.commit_version()
        registry.forget(silo="silo-0", actor="admin")
    rest = [c for c in components if c.meta.silo != "silo-0"]
    with Registry.open(root) as registry:
        assert registry.composed_delta().equal(compose(rest))
        registry.forget(component_id=rest[0].id, actor="admin")
    with Registry.open(root) as registry:
        assert registry.composed_delta().equal(compose(rest[1:]))
        assert registry.version_bytes() == registry.export_bytes()
        assert registry.verify().clean


def test_forget_includes_uncommitted_components(registry: Registry) -> None:
    components = make_components(2, 2)
    _add_all(registry, components[:2])
    registry.commit_version()
    _add_all(registry, components[2:])  # silo-1, not committed yet
    registry.forget(component_id=components[0].id, actor="admin")
    assert registry.composed_delta().equal(compose(components[1:]))
    registry.forget(silo="silo-1", actor="admin")  # pending and summed alike
    assert registry.composed_delta().equal(compose(components[1:2]))
    assert registry.verify().clean


def test_forgetting_everything_leaves_a_zero_delta(registry: Registry) -> None:
    component = make_component("alpha", 1)
    registry.add(component)
    registry.commit_version()
    result = registry.forget(silo="alpha", actor="admin")
    assert result.version.count == 0
    assert registry.composed_delta().equal(Delta.zeros(SHAPES))
    assert registry.verify().clean
    registry.add(make_component("beta", 2))
    assert registry.commit_version().count == 1


def test_forget_purges_older_versions_that_held_the_component(registry: Registry) -> None:
    a, b = make_component("alpha", 1), make_component("beta", 2)
    registry.add(a)
    v1 = registry.commit_version()
    registry.add(b)
    v2 = registry.commit_version()
    registry.forget(silo="beta", actor="admin")
    v3 = registry.current_version()
    assert v3 is not None
    assert v3.component_ids == (a.id,)
    versions = {v.number: v for v in registry.versions()}
    assert not versions[1].purged
    assert versions[2].purged
    assert not versions[3].purged
    assert registry.composed_delta(v1.number).equal(compose([a]))
    with pytest.raises(NotFoundError, match="forgotten"):
        registry.composed_delta(v2.number)
    assert not registry.blobs.version_path(v2.blob_sha256).exists()
    assert v3.blob_sha256 == v1.blob_sha256  # the same set: the same bytes
    assert registry.verify().clean


def test_compose_what_if(registry: Registry) -> None:
    components = make_components(3, 2)
    _add_all(registry, components)
    registry.commit_version()
    late = make_component("silo-2", 77, increment=2)
    registry.add(late)  # pending
    everything = [*components, late]
    assert registry.compose().equal(compose(everything))
    keep = [c for c in everything if c.meta.silo not in ("silo-0", "silo-2")]
    assert registry.compose(exclude_silos=["silo-0", "silo-2"]).equal(compose(keep))
    by_examples = registry.compose(exclude_silos=["silo-0"], weighting="num-examples")
    rest = [c for c in everything if c.meta.silo != "silo-0"]
    assert by_examples.equal(compose(rest, "num-examples"))
    with pytest.raises(NotFoundError, match="nowhere"):
        registry.compose(exclude_silos=["nowhere"])
    assert registry.status().pending == 1  # nothing changed


def test_export_format_has_no_timestamps(registry: Registry, tmp_path: Path) -> None:
    components = make_components(2, 2)
    _add_all(registry, components)
    registry.commit_version()
    out = tmp_path / "model.safetensors"
    sha = registry.export(out)
    data = out.read_bytes()
    assert data == registry.export_bytes() == registry.version_bytes()
    assert (out.stat().st_mode & 0o777) == 0o600
    metadata = safetensors_metadata(data)
    assert list(metadata) == [COMPOSITION_KEY]
    delta, info = read_composition(data)
    assert info == {
        "base_sha256": BASE_SHA,
        "weighting": "uniform",
        "component_ids": sorted(c.id for c in components),
        "count": 4,
    }
    assert delta.equal(compose(components))
    exports = [e for e in registry.audit_log() if e.action == "export"]
    assert exports[0].hashes["export"] == sha
    assert exports[0].details["path"] == str(out)


def test_empty_export_is_zeros(registry: Registry) -> None:
    delta, info = read_composition(registry.export_bytes())
    assert delta.equal(Delta.zeros(SHAPES))
    assert info["count"] == 0
    with pytest.raises(NotFoundError, match="no version"):
        registry.composed_delta()
