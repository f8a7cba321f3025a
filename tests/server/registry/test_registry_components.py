"""Adding, listing, reading and refusing components; opening and reopening registries."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch

from tests.server.registry.registry_helpers import (
    BASE_SHA,
    OTHER_SHA,
    SHAPES,
    make_base,
    make_component,
    make_delta,
)
from tmc.common.components import Component, ComponentMeta, Delta
from tmc.common.errors import (
    BaseMismatchError,
    ComponentError,
    ComponentSchemaError,
    NonFiniteError,
    NormBoundError,
    NotFoundError,
    RegistryError,
)
from tmc.server.registry import (
    BaseRecord,
    ForgottenComponentError,
    Registry,
    RegistryClosedError,
    RegistryExistsError,
    RegistryMismatchError,
)


def test_add_list_get_round_trip(registry: Registry) -> None:
    first = make_component("alpha", 1, round=3, increment=2)
    second = make_component("beta", 2)
    record = registry.add(first, actor="server", round=7)
    registry.add(second)

    assert record.id == first.id
    assert (record.silo, record.round, record.increment) == ("alpha", 3, 2)
    assert record.received_round == 7
    assert record.num_examples == first.meta.num_examples
    assert record.status == "active"
    assert not record.in_sum
    assert math.isclose(record.norm, first.delta.norm())
    assert [r.id for r in registry.list_components()] == [first.id, second.id]
    assert [r.id for r in registry.list_components(silo="beta")] == [second.id]
    assert registry.list_components(status="forgotten") == []

    back = registry.get_component(first.id)
    assert back.id == first.id
    assert back.delta.equal(first.delta)
    assert back.meta == first.meta
    assert registry.component_record(second.id).silo == "beta"

    assert [s.silo for s in registry.silos()] == ["alpha", "beta"]
    status = registry.status()
    assert (status.active, status.pending, status.silos, status.current_version) == (2, 2, 2, None)


def test_add_is_idempotent_for_an_active_component(registry: Registry) -> None:
    component = make_component("alpha", 1)
    first = registry.add(component)
    again = registry.add(component)
    assert again == first
    adds = [e for e in registry.audit_log() if e.action == "add"]
    assert len(adds) == 1
    assert adds[0].component_id == component.id
    assert adds[0].hashes["blob"] == first.blob_sha256


def test_add_is_audited_with_hashes(registry: Registry) -> None:
    component = make_component("alpha", 1)
    record = registry.add(component, actor="node-7", round=2)
    (create, add) = registry.audit_log()
    assert create.action == "create"
    assert create.hashes["base"] == BASE_SHA
    assert (add.action, add.actor, add.silo, add.component_id) == (
        "add",
        "node-7",
        "alpha",
        component.id,
    )
    assert add.hashes == {"component": component.id, "blob": record.blob_sha256, "base": BASE_SHA}
    assert add.details["received_round"] == 2
    assert registry.audit_log(since=create.seq) == [add]
    assert registry.audit_log(since=add.at) == [add]


def test_reject_is_recorded_and_changes_nothing_else(registry: Registry) -> None:
    event = registry.reject(silo="gamma", round=4, reason="norm too large", component_id="abc")
    assert (event.action, event.silo, event.component_id) == ("reject", "gamma", "abc")
    assert event.details == {"round": 4, "reason": "norm too large"}
    assert registry.audit_log()[-1] == event
    assert registry.list_components(status="all") == []
    assert registry.silos() == []


def _nan_component() -> Component:
    delta = make_delta(5)
    poisoned = Delta({"a": delta["a"], "b": torch.full((16,), math.nan)})
    return make_component("alpha", 5, delta=poisoned)


def _wrong_shapes() -> Component:
    return make_component("alpha", 6, delta=make_delta(6, shapes={"a": (4, 8), "b": (16,)}))


def _wrong_keys() -> Component:
    return make_component("alpha", 7, delta=make_delta(7, shapes={"a": (8, 4), "c": (16,)}))


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: make_component("alpha", 1, base_sha=OTHER_SHA), BaseMismatchError, "base"),
        (_nan_component, NonFiniteError, "NaN"),
        (_wrong_shapes, ComponentSchemaError, "shapes"),
        (_wrong_keys, ComponentSchemaError, "keys"),
        (lambda: make_component("alpha", 2, scale=100.0), NormBoundError, "bound"),
        (lambda: make_component("mallory", 3), ComponentError, "sent by silo"),
    ],
    ids=["base", "nan", "shapes", "keys", "norm", "silo"],
)
def test_invalid_components_are_refused_and_nothing_is_written(
    root: Path, store_kind: str, build: object, error: type[Exception], words: str
) -> None:
    with Registry.create(root, base=make_base(), max_norm=50.0, store=store_kind) as registry:  # type: ignore[arg-type]
        events_before = registry.audit_log()
        component = build()  # type: ignore[operator]
        expected = "mallory" if component.meta.silo == "mallory" else None
        with pytest.raises(error, match=words):
            registry.add(component, expected_silo="alpha" if expected else None)
        assert registry.list_components(status="all") == []
        assert registry.blobs.list_components() == []
        assert not registry.blobs.has_component(component.id)
        assert registry.audit_log() == events_before  # a 'reject' only if the caller asks
        assert registry.verify().clean


def test_norm_bound_accepts_components_within_it(root: Path) -> None:
    with Registry.create(root, base=make_base(), max_norm=50.0) as registry:
        registry.add(make_component("alpha", 1, scale=1.0))
        assert len(registry.list_components()) == 1


def test_readding_a_forgotten_component_is_refused(registry: Registry) -> None:
    component = make_component("alpha", 1)
    registry.add(component)
    registry.add(make_component("beta", 2))
    registry.commit_version()
    registry.forget(component_id=component.id, actor="admin", reason="GDPR request")
    with pytest.raises(ForgottenComponentError, match="forgotten on request"):
        registry.add(component)
    record = registry.component_record(component.id)
    assert record.status == "forgotten"
    assert record.forgotten_at is not None
    with pytest.raises(NotFoundError, match="forgotten"):
        registry.get_component(component.id)
    assert not registry.blobs.has_component(component.id)


def test_unknown_component_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError):
        registry.get_component("f" * 64)
    with pytest.raises(NotFoundError):
        registry.forget(component_id="f" * 64, actor="admin")
    with pytest.raises(NotFoundError, match="nowhere"):
        registry.forget(silo="nowhere", actor="admin")
    with pytest.raises(RegistryError, match="exactly one"):
        registry.forget(actor="admin")
    with pytest.raises(RegistryError, match="invalid blob key"):
        registry.blobs.component_path("../../etc/passwd")


def test_reopen_keeps_everything(root: Path, base: BaseRecord) -> None:
    component = make_component("alpha", 1)
    with Registry.create(root, base=base, weighting="num-examples", max_norm=9.0) as registry:
        registry.add(component)
        version = registry.commit_version(round=1, reason="round 1")
        events = registry.audit_log()
    with Registry.open(root) as registry:
        assert registry.settings.weighting == "num-examples"
        assert registry.settings.max_norm == 9.0
        assert registry.current_version() == version
        assert registry.get_component(component.id).delta.equal(component.delta)
        assert registry.audit_log() == events  # nothing to recover: no 'recover' event
        assert registry.verify().clean


def test_reopening_with_another_base_is_refused(root: Path, base: BaseRecord) -> None:
    with Registry.open_or_create(root, base=base) as registry:
        registry.add(make_component("alpha", 1))
    other = make_base(OTHER_SHA)
    with pytest.raises(RegistryMismatchError) as info:
        Registry.open_or_create(root, base=other)
    assert BASE_SHA in str(info.value)
    assert OTHER_SHA in str(info.value)
    other_shapes = make_base(shapes={"a": (8, 4)})
    with pytest.raises(RegistryMismatchError):
        Registry.open_or_create(root, base=other_shapes)
    with pytest.raises(RegistryMismatchError, match="weighting"):
        Registry.open_or_create(root, base=base, weighting="num-examples")
    with Registry.open_or_create(root, base=base) as registry:
        assert len(registry.list_components()) == 1


def test_create_refuses_an_existing_registry(root: Path, base: BaseRecord) -> None:
    Registry.create(root, base=base).close()
    with pytest.raises(RegistryExistsError):
        Registry.create(root, base=base)
    with pytest.raises(NotFoundError):
        Registry.open(root.parent / "elsewhere")


def test_closed_registry_refuses_work(registry: Registry) -> None:
    registry.close()
    with pytest.raises(RegistryClosedError):
        registry.add(make_component("alpha", 1))
    with pytest.raises(RegistryClosedError):
        registry.list_components()
    registry.close()  # idempotent


def test_base_record_schema(base: BaseRecord) -> None:
    schema = base.schema()
    assert schema.base_sha256 == BASE_SHA
    assert dict(schema.shapes) == SHAPES
    assert schema.numel == 8 * 4 + 16
    with pytest.raises(ValueError, match="tangent parameter"):
        BaseRecord(spec_json="{}", sha256=BASE_SHA, shapes={})


def test_component_metadata_round_trips_through_the_row(registry: Registry) -> None:
    meta = ComponentMeta(
        base_sha256=BASE_SHA,
        silo="alpha",
        round=2,
        increment=1,
        task="t1",
        classes=(3, 1, 2),
        num_examples=42,
        metrics={"loss": 0.25, "accuracy": 0.875},
        data_fingerprint="ab" * 32,
    )
    component = Component(make_delta(9), meta)
    registry.add(component)
    (record,) = registry.list_components()
    assert record.classes == (1, 2, 3)
    assert record.task == "t1"
    assert record.metrics == {"accuracy": 0.875, "loss": 0.25}
    assert record.data_fingerprint == "ab" * 32
    assert record.created_at == meta.created_at


def test_a_component_the_exact_sum_cannot_hold_is_refused(root: Path, store_kind: str) -> None:
    huge = make_component("alpha", 1, examples=10**10)  # 10¹⁰ × |Δ|~1 exceeds fixed point
    with Registry.create(
        root,
        base=make_base(),
        weighting="num-examples",
        store=store_kind,  # type: ignore[arg-type]
    ) as registry:
        with pytest.raises(ComponentError, match="cannot be composed exactly"):
            registry.add(huge)
        assert registry.list_components(status="all") == []
        registry.add(make_component("alpha", 2))
        assert registry.commit_version().count == 1


def test_open_or_create_from_two_threads_at_once(root: Path, base: BaseRecord) -> None:
    opened: list[Registry] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        try:
            barrier.wait()
            opened.append(Registry.open_or_create(root, base=base))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(opened) == 4
    for registry in opened:
        registry.close()
    with Registry.open(root) as registry:
        assert [e.action for e in registry.audit_log()] == ["create"]
