"""Components survive a safetensors round trip exactly; malformed bytes get clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from tmc.common.components import (
    Component,
    ComponentMeta,
    Delta,
    TangentSchema,
    component_from_bytes,
    component_to_bytes,
    load_component,
    save_component,
    validate_component,
)
from tmc.common.errors import (
    BaseMismatchError,
    ComponentError,
    ComponentSchemaError,
    NonFiniteError,
    NormBoundError,
)

BASE = "ab" * 32
SHAPES = {"layer.weight": (4, 3), "layer.bias": (4,)}


def make_component(seed: int = 0, *, silo: str = "silo-a", base: str = BASE) -> Component:
    generator = torch.Generator().manual_seed(seed)
    delta = Delta({n: torch.randn(s, generator=generator) for n, s in SHAPES.items()})
    meta = ComponentMeta(
        base_sha256=base, silo=silo, round=1, num_examples=17, classes=(3, 1), metrics={"loss": 0.5}
    )
    return Component(delta, meta)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    component = make_component()
    path = tmp_path / "c.safetensors"
    save_component(component, path)
    loaded = load_component(path)
    assert loaded.id == component.id
    assert loaded.delta.equal(component.delta)
    assert loaded.meta == component.meta
    assert component_to_bytes(loaded) == path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600


def test_id_covers_every_byte_and_field() -> None:
    component = make_component()
    changed = dict(component.delta)
    changed["layer.bias"] = changed["layer.bias"].clone()
    changed["layer.bias"][0] = torch.nextafter(changed["layer.bias"][0], torch.tensor(10.0))
    assert Component(Delta(changed), component.meta).id != component.id
    other_meta = component.meta.model_copy(update={"num_examples": 18})
    assert Component(component.delta, other_meta).id != component.id
    assert make_component().meta.classes == (1, 3)


def _with_header(header: dict[str, object], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"\x01\x02", "truncated"),
        ((10**9).to_bytes(8, "little") + b"{}", "declares"),
        (b"\x04\x00\x00\x00\x00\x00\x00\x00nope", "not valid JSON"),
        (
            _with_header({"t": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8),
            "F32",
        ),
        (
            _with_header({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
            "needs 16 bytes",
        ),
        (
            _with_header({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 64]}}, b"\0" * 8),
            "outside",
        ),
        (save({"t": torch.zeros(2)}), "not a TMC component"),
    ],
)
def test_malformed_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        component_from_bytes(data)


def test_tampered_content_is_detected() -> None:
    component = make_component()
    data = bytearray(component_to_bytes(component))
    data[-1] ^= 0x01  # flip a bit of the last tensor value
    with pytest.raises(ComponentError, match="altered"):
        component_from_bytes(bytes(data))


def test_oversized_and_invalid_metadata_are_refused() -> None:
    data = component_to_bytes(make_component())
    with pytest.raises(ComponentError, match="over the limit"):
        component_from_bytes(data, max_bytes=len(data) - 1)
    bad_meta = save(
        {"layer.bias": torch.zeros(4)}, metadata={"tmc.meta": json.dumps({"silo": "x"})}
    )
    with pytest.raises(ComponentError, match="metadata is invalid"):
        component_from_bytes(bad_meta)


def test_nan_is_refused_on_read() -> None:
    component = make_component()
    tensors = dict(component.delta)
    tensors["layer.bias"] = tensors["layer.bias"].clone()
    tensors["layer.bias"][2] = float("inf")
    poisoned = save(tensors, metadata={"tmc.meta": component.meta.canonical_json()})
    with pytest.raises(NonFiniteError):
        component_from_bytes(poisoned)


def test_validation_against_the_base() -> None:
    schema = TangentSchema(base_sha256=BASE, shapes=SHAPES)
    good = make_component()
    validate_component(good, schema, max_norm=100.0, expected_silo="silo-a")
    with pytest.raises(BaseMismatchError, match="base"):
        validate_component(make_component(base="cd" * 32), schema)
    with pytest.raises(ComponentError, match="claims silo 'silo-a'"):
        validate_component(good, schema, expected_silo="silo-b")
    with pytest.raises(ComponentSchemaError, match="missing"):
        validate_component(good, TangentSchema(BASE, {**SHAPES, "other.weight": (2,)}))
    with pytest.raises(ComponentSchemaError, match="shapes"):
        validate_component(good, TangentSchema(BASE, {**SHAPES, "layer.bias": (5,)}))
    with pytest.raises(NormBoundError, match="bound"):
        validate_component(good, schema, max_norm=1e-3)
    nan = Component(Delta({**good.delta, "layer.bias": torch.full((4,), float("nan"))}), good.meta)
    with pytest.raises(NonFiniteError, match=r"layer\.bias"):
        validate_component(nan, schema)


def test_metadata_validation() -> None:
    with pytest.raises(ValueError, match="silo"):
        ComponentMeta(base_sha256=BASE, silo="../etc/passwd", num_examples=1)
    with pytest.raises(ValueError, match="base_sha256"):
        ComponentMeta(base_sha256="xyz", silo="a", num_examples=1)
    with pytest.raises(ValueError, match="num_examples"):
        ComponentMeta(base_sha256=BASE, silo="a", num_examples=0)
    with pytest.raises(ValueError, match="finite"):
        ComponentMeta(base_sha256=BASE, silo="a", num_examples=1, metrics={"loss": float("nan")})
