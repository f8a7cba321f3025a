"""The ServerApp's rounds, driven through an in-process Grid (no Ray): commits, order,
late and hostile silos, θ0 distribution, continuation of the registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from flwr.app import Message, RecordDict

from tests.server.federation.fake_grid import FakeGrid
from tests.server.federation.rounds_helpers import run_rounds
from tmc.common.components import compose, dense_bytes
from tmc.common.federation import DELTA, REPLY, THETA0
from tmc.common.federation.config import FederationConfig
from tmc.common.models import MaterializedBase
from tmc.server.federation import read_history


def test_rounds_commit_every_component_and_a_second_run_continues(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    config = make_config()
    with run_rounds(config, make_grid(config), digits_base) as registry:
        records = registry.list_components(status="active")
        assert sorted((r.silo, r.increment) for r in records) == [
            (f"silo-{s}", i) for s in range(3) for i in range(2)
        ]
        first_ids = {r.id for r in records}
        assert [v.round for v in registry.versions()] == [1, 2]
        composed = registry.composed_delta()
        everything = [registry.get_component(r.id) for r in records]
        assert composed.equal(compose(everything))
    history = read_history(config.registry_path)
    assert [h.round for h in history] == [1, 2]
    assert all(h.accuracy is not None and h.accuracy > 0.9 for h in history)

    again = make_config(rounds=1)
    with run_rounds(again, make_grid(again), digits_base) as registry:
        records = registry.list_components(status="active")
        assert first_ids < {r.id for r in records}  # nothing retrained or replaced
        new = [r for r in records if r.id not in first_ids]
        assert sorted((r.silo, r.increment, r.round) for r in new) == [
            (f"silo-{s}", 2, 3) for s in range(3)
        ]
    assert [h.round for h in read_history(config.registry_path)] == [1, 2, 3]


def test_arrival_order_does_not_change_the_model(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
    tmp_path: object,
) -> None:
    """The same replies, received in opposite orders, give the same bytes everywhere."""
    recorded: dict[int, RecordDict] = {}

    def record(node: int, reply: Message) -> Message:
        if reply.metadata.message_type == "train.component":
            recorded[node] = reply.content
        return reply

    def replay(node: int, reply: Message) -> Message:
        if reply.metadata.message_type == "train.component":
            reply.content = recorded[node]
        return reply

    forward = make_config(rounds=1, registry=f"{tmp_path}/forward")
    backward = make_config(rounds=1, registry=f"{tmp_path}/backward")
    with (
        run_rounds(forward, make_grid(forward, tamper=record), digits_base) as a,
        run_rounds(
            backward,
            make_grid(backward, tamper=replay, order=lambda replies: list(reversed(replies))),
            digits_base,
        ) as b,
    ):
        assert [r.id for r in a.list_components()] == [r.id for r in b.list_components()]
        assert a.current_version() is not None
        assert b.current_version() is not None
        assert a.current_version().delta_sha256 == b.current_version().delta_sha256
        assert a.version_bytes() == b.version_bytes()
        assert a.export_bytes() == b.export_bytes()
        order_a = [e.component_id for e in a.audit_log() if e.action == "add"]
        order_b = [e.component_id for e in b.audit_log() if e.action == "add"]
        assert order_a == list(reversed(order_b))  # they really arrived in opposite orders


def test_a_silent_silo_is_recorded_and_the_round_goes_on(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    config = make_config(rounds=1, round_timeout=0.3)
    grid = make_grid(config)
    original_push = grid.push_messages

    def push(messages: object) -> object:
        listed = list(messages)  # type: ignore[call-overload]
        if any(m.metadata.message_type == "train.component" for m in listed):
            grid.silent.add(1002)
        return original_push(listed)

    grid.push_messages = push  # type: ignore[method-assign]
    with run_rounds(config, grid, digits_base) as registry:
        assert {r.silo for r in registry.list_components()} == {"silo-0", "silo-1"}
        rejects = [e for e in registry.audit_log() if e.action == "reject"]
        assert [(e.silo, e.details["reason"]) for e in rejects] == [
            ("silo-2", "no reply within round-timeout")
        ]
    assert read_history(config.registry_path)[0].rejected[0].silo == "silo-2"


def _poison(kind: str) -> Callable[[int, Message], Message]:
    def tamper(node: int, reply: Message) -> Message:
        if reply.metadata.message_type != "train.component" or reply.has_error():
            return reply
        content = reply.content
        arrays = content.array_records[DELTA]
        name = sorted(arrays)[0]
        if kind == "nan" and node == 1001:
            tensor = arrays[name].numpy().copy()
            tensor.flat[0] = float("nan")
            arrays[name] = type(arrays[name])(tensor)
        elif kind == "shape" and node == 1001:
            arrays[name] = type(arrays[name])(torch.zeros(3).numpy())
        elif kind == "base" and node == 1001:
            record = content.config_records[REPLY]
            record["json"] = (
                str(record["json"]).replace('"base_sha256":"', '"base_sha256":"0', 1)[:-1] + "}"
            )
        elif kind == "identity" and node == 1001:
            record = content.config_records[REPLY]
            record["json"] = str(record["json"]).replace('"silo":"silo-1"', '"silo":"silo-0"')
        elif kind == "encoding" and node == 1001:  # claims int8 but sends float32 arrays
            record = content.config_records[REPLY]
            record["json"] = str(record["json"])[:-1] + ',"encoding":"int8"}'
        return reply

    return tamper


def test_hostile_replies_are_refused_with_a_reason(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
    tmp_path: object,
) -> None:
    expected = {
        "nan": "NaN",
        "shape": "shape",
        "base": "base",
        "identity": "claims silo 'silo-0'",
        "encoding": "does not have",
    }
    for kind, reason in expected.items():
        config = make_config(rounds=1, registry=f"{tmp_path}/{kind}")
        with run_rounds(config, make_grid(config, tamper=_poison(kind)), digits_base) as registry:
            assert {r.silo for r in registry.list_components()} == {"silo-0", "silo-2"}, kind
            rejects = [e for e in registry.audit_log() if e.action == "reject"]
            assert len(rejects) == 1, kind
            assert rejects[0].silo == "silo-1"
            assert reason in str(rejects[0].details["reason"]), (kind, rejects[0].details)
            assert registry.verify().ok


def test_theta0_travels_only_to_nodes_that_lack_it(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    sent: list[str] = []
    config = make_config(rounds=1)

    def run_once() -> None:
        grid = make_grid(config)
        original_push = grid.push_messages

        def push(messages: object) -> object:
            listed = list(messages)  # type: ignore[call-overload]
            sent.extend(m.metadata.message_type for m in listed)
            return original_push(listed)

        grid.push_messages = push  # type: ignore[method-assign]
        run_rounds(config, grid, digits_base).close()

    run_once()
    assert sent.count(THETA0) == 3
    sent.clear()
    run_once()
    assert sent.count(THETA0) == 0


def test_int8_uploads_are_stored_as_received_and_composed_exactly(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    config = make_config(rounds=1, upload_dtype="int8")
    dense = dense_bytes({n: s for n, (s, _) in digits_base.tangent_shapes().items()})
    with run_rounds(config, make_grid(config), digits_base) as registry:
        records = registry.list_components()
        assert {r.encoding for r in records} == {"int8"}
        assert all(dense / (r.payload_bytes or dense) >= 3.9 for r in records)
        parts = [registry.get_component(r.id) for r in records]
        assert registry.composed_delta().equal(compose(parts))
        assert registry.verify().ok
    (summary,) = read_history(config.registry_path)
    assert 0 < summary.upload_bytes < 3 * dense / 3.5  # metadata and metrics come along
