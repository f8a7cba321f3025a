"""Hostile and malformed input, property-based: whatever arrives, the answer is a clear
project error (never a crash, never a partial write) and nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from tests.server.registry.registry_helpers import BASE_SHA, SHAPES, make_base, make_component
from tmc.client.node import NodeSettings
from tmc.common.components import (
    Component,
    ComponentMeta,
    Delta,
    component_from_bytes,
    component_to_bytes,
)
from tmc.common.errors import ComponentError, ConfigError, TMCError
from tmc.common.federation import DELTA, REPLY, component_from_content
from tmc.common.federation.config import FederationConfig
from tmc.server.registry import Registry

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_bytes() -> bytes:
    return component_to_bytes(make_component("silo-a", 1))


@FAST
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    with pytest.raises(ComponentError):
        component_from_bytes(data)


@FAST
@given(st.integers(min_value=0, max_value=len(_valid_bytes()) - 1))
def test_truncated_components_are_refused(cut: int) -> None:
    with pytest.raises(ComponentError):
        component_from_bytes(_valid_bytes()[:cut])


@FAST
@given(st.data())
def test_flipped_bytes_never_pass_unnoticed(data: st.DataObject) -> None:
    original = _valid_bytes()
    position = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    value = data.draw(
        st.integers(min_value=0, max_value=255).filter(lambda v: v != original[position])
    )
    mutated = bytearray(original)
    mutated[position] = value
    try:
        component = component_from_bytes(bytes(mutated))
    except ComponentError:
        return
    # A change that parses must still describe the same component (e.g. JSON whitespace).
    assert component.id == make_component("silo-a", 1).id


@FAST
@given(
    shape=st.lists(st.integers(min_value=0, max_value=2**40), min_size=0, max_size=4),
    start=st.integers(min_value=-5, max_value=2**40),
    length=st.integers(min_value=-5, max_value=2**40),
    dtype=st.sampled_from(["F32", "F64", "F16", "BF16", "I64", "U8", "BOOL", "nope"]),
)
def test_declared_sizes_that_do_not_match_are_refused(
    shape: list[int], start: int, length: int, dtype: str
) -> None:
    header = json.dumps(
        {
            "__metadata__": {"tmc.meta": "{}"},
            "t": {"dtype": dtype, "shape": shape, "data_offsets": [start, start + length]},
        }
    ).encode()
    data = len(header).to_bytes(8, "little") + header + b"\0" * 64
    with pytest.raises(ComponentError):
        component_from_bytes(data, max_bytes=1 << 20)


def test_an_oversized_component_is_refused_before_parsing() -> None:
    huge = save({"t": torch.zeros(1 << 18)}, metadata={"tmc.meta": "{}"})
    with pytest.raises(ComponentError, match="over the limit"):
        component_from_bytes(huge, max_bytes=1 << 16)


special = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 0.0])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    poison=special,
    silo=st.sampled_from(["silo-a", "silo-b"]),
    base=st.sampled_from([BASE_SHA, "1" * 64]),
    shape=st.sampled_from([SHAPES["a"], (4, 8), (8, 5), (32,)]),
)
def test_the_registry_refuses_poisoned_components_and_stays_unchanged(
    tmp_path_factory: pytest.TempPathFactory,
    poison: float,
    silo: str,
    base: str,
    shape: tuple[int, ...],
) -> None:
    root = tmp_path_factory.mktemp("hostile") / "registry"
    with Registry.create(root, base=make_base(), max_norm=1e6) as registry:
        tensors = {"a": torch.zeros(shape), "b": torch.zeros(SHAPES["b"])}
        tensors["a"].view(-1)[0] = poison
        meta = ComponentMeta(base_sha256=base, silo=silo, num_examples=5)
        component = Component(Delta(tensors), meta)
        audit = registry.audit_log()
        clean = poison == 0.0 and base == BASE_SHA and shape == SHAPES["a"] and silo == "silo-a"
        if clean:
            registry.add(component, expected_silo="silo-a")
            return
        with pytest.raises(ComponentError):
            registry.add(component, expected_silo="silo-a")
        assert registry.list_components(status="all") == []
        assert registry.audit_log() == audit
        assert not list((root / "blobs").rglob("*.safetensors"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@FAST
@given(
    st.dictionaries(
        st.sampled_from([*FederationConfig().to_run_config(), "bogus", "num-silo"]),
        json_values | st.integers(-(10**9), 10**9) | st.floats(),
        max_size=6,
    )
)
def test_run_config_values_out_of_range_are_refused_clearly(values: dict[str, object]) -> None:
    try:
        config = FederationConfig.from_run_config(values)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("invalid run config")
        return
    # Accepted: every derived spec must build, or refuse with a project error.
    try:
        config.partition_spec()
        config.train_config()
        config.base_spec()
    except (TMCError, ValueError):
        pass


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            ["silo-id", "data-path", "device", "cache-dir", "partition-id", "num-partitions", "x"]
        ),
        json_values | st.integers(),
        max_size=5,
    )
)
def test_node_config_is_validated(values: dict[str, object]) -> None:
    try:
        settings = NodeSettings.from_node_config(values)
    except ConfigError as exc:
        # The refusal names what is wrong: a key given (``key: why``), or the missing source
        # of data when neither data-path nor partition-id was given a value.
        message = str(exc)
        named = [key for key in values if f"{key}:" in message]
        unset = values.get("data-path") is None and values.get("partition-id") is None
        assert named or (unset and "data-path" in message), message
        return
    # Accepted: only known keys, a source of data, and every value kept as given.
    assert "x" not in values
    assert settings.data_path is not None or settings.partition_id is not None
    kept = settings.model_dump(by_alias=True)
    assert all((kept[key] is None) == (value is None) for key, value in values.items())


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"silo-id": "silo-a", "data-path": "/data/a", "x": 1}, "x:"),
        ({"silo-id": "no spaces please", "data-path": "/data/a"}, "silo-id:"),
        ({"data-path": "/data/a", "device": "tpu"}, "device:"),
        ({"partition-id": -1}, "partition-id:"),
        ({"silo-id": "silo-a"}, "data-path"),
    ],
)
def test_node_config_refusals_name_the_key(values: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        NodeSettings.from_node_config(values)


def test_a_valid_node_config_is_read() -> None:
    settings = NodeSettings.from_node_config(
        {"silo-id": "silo-a", "data-path": "/data/a", "device": "cpu", "test-fraction": 0.25}
    )
    assert (settings.silo_id, settings.data_path, settings.device) == (
        "silo-a",
        Path("/data/a"),
        "cpu",
    )
    assert settings.test_fraction == 0.25


arrays = st.dictionaries(
    st.sampled_from(["a", "b", "c", "a/../../x"]),
    st.tuples(
        st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
        st.lists(st.integers(min_value=0, max_value=9), max_size=3),
    ),
    max_size=3,
)


@FAST
@given(arrays=arrays, meta=st.one_of(st.text(max_size=50), json_values.map(json.dumps)))
def test_malformed_replies_are_refused(
    arrays: dict[str, tuple[type, list[int]]], meta: str
) -> None:
    record = ArrayRecord(
        {name: Array(np.zeros(shape, dtype=dtype)) for name, (dtype, shape) in arrays.items()}
    )
    content = RecordDict({DELTA: record, REPLY: ConfigRecord({"json": meta})})
    with pytest.raises(TMCError):
        component_from_content(content, shapes=SHAPES)


def test_a_reply_whose_arrays_lie_about_their_header_is_refused() -> None:
    honest = make_component("silo-a", 3)
    record = ArrayRecord({n: Array(t.numpy()) for n, t in honest.delta.items()})
    forged = record["a"]
    forged.__dict__["shape"] = (8, 4)  # claims the right shape...
    forged.__dict__["data"] = Array(np.zeros((2, 2), np.float32)).data  # ...holds another
    content = RecordDict(
        {DELTA: record, REPLY: ConfigRecord({"json": honest.meta.canonical_json()})}
    )
    with pytest.raises(ComponentError, match="not what its header declared"):
        component_from_content(content, shapes=SHAPES)


def test_oversized_reply_arrays_are_refused_before_decoding(tmp_path: Path) -> None:
    record = ArrayRecord(
        {"a": Array(np.zeros((1000, 1000), np.float32)), "b": Array(np.zeros(16, np.float32))}
    )
    content = RecordDict(
        {DELTA: record, REPLY: ConfigRecord({"json": make_component("s", 1).meta.canonical_json()})}
    )
    with pytest.raises(ComponentError, match="shape"):
        component_from_content(content, shapes=SHAPES)
