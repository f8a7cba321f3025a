"""Compressed components: bfloat16 and int8 payloads round trip, decode exactly the same
everywhere, compose and forget bit-exactly, and hostile payloads are refused."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from tests.helpers import random_delta
from tmc.common.components import (
    ENCODINGS,
    Component,
    ComponentMeta,
    Delta,
    Encoding,
    TangentSchema,
    component_from_bytes,
    component_to_bytes,
    compose,
    decode,
    dense_bytes,
    encode,
    payload_bytes,
    validate_component,
)
from tmc.common.components.codec import META_KEY
from tmc.common.errors import ComponentError
from tmc.common.models import MaterializedBase
from tmc.server.registry import BaseRecord, Registry

SHAPES = {"conv.weight": (6, 3, 3, 3), "conv.bias": (6,), "fc.weight": (4, 24)}


def _delta(seed: int, scale: float = 0.05) -> Delta:
    g = torch.Generator().manual_seed(seed)
    return Delta({n: scale * torch.randn(s, generator=g) for n, s in SHAPES.items()})


def _meta(silo: str, encoding: Encoding, base: str = "a" * 64, increment: int = 0) -> ComponentMeta:
    return ComponentMeta(
        base_sha256=base, silo=silo, num_examples=10, encoding=encoding, increment=increment
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_is_close_and_decoding_is_exact(encoding: Encoding) -> None:
    delta = _delta(0)
    payload = encode(delta, encoding)
    decoded = decode(payload, encoding)
    again = decode({k: v.clone() for k, v in payload.items()}, encoding)
    assert decoded.equal(again), "decoding is a function of the payload bytes"
    for name, original in delta.items():
        error = (decoded[name] - original).abs().max().item()
        peak = original.abs().max().item()
        bound = {"float32": 0.0, "bfloat16": peak * 2**-8, "int8": peak / 254}
        assert error <= bound.get(encoding, peak / 254) + 1e-12, (name, error)
    component = Component.encoded(delta, _meta("silo-a", encoding))
    read = component_from_bytes(component_to_bytes(component))
    assert read.id == component.id
    assert read.delta.equal(component.delta)
    assert read.meta.encoding == encoding


def test_float32_components_keep_their_ids() -> None:
    """Encodings did not change what a float32 component hashes to (its meta JSON)."""
    meta = _meta("silo-a", "float32")
    assert "encoding" not in json.loads(meta.canonical_json())
    assert Component(_delta(1), meta).id == Component.encoded(_delta(1), meta).id


def test_compressed_uploads_are_smaller(digits_base: MaterializedBase) -> None:
    shapes = {n: s for n, (s, _) in digits_base.tangent_shapes().items()}
    delta = Delta(random_delta(digits_base, seed=3))
    dense = dense_bytes(shapes)
    sizes = {e: payload_bytes(encode(delta, e)) for e in ENCODINGS}
    assert sizes["float32"] == dense
    assert dense / sizes["bfloat16"] == 2.0
    assert dense / sizes["int8"] >= 3.9
    assert dense / sizes["int8-channel"] >= 3.9


@pytest.mark.parametrize("encoding", ["bfloat16", "int8", "int8-channel"])
def test_composition_and_forgetting_are_exact_on_decoded_values(
    tmp_path: Path, encoding: Encoding
) -> None:
    base = BaseRecord(spec_json="{}", sha256="a" * 64, shapes=SHAPES)
    parts = [
        Component.encoded(_delta(s, 10.0 ** (s % 3 - 1)), _meta(f"s{s}", encoding))
        for s in range(4)
    ]
    orders = [compose(list(p)) for p in itertools.permutations(parts)]
    assert all(o.equal(orders[0]) for o in orders), "any order: the same bytes"
    with Registry.create(tmp_path / "r", base=base) as registry:
        for part in parts:
            registry.add(part)
        registry.commit_version()
        registry.forget(silo="s2", actor="test")
        assert registry.composed_delta().equal(compose([parts[0], parts[1], parts[3]]))
        stored = {r.silo: r for r in registry.list_components()}
        assert stored["s0"].encoding == encoding
        assert stored["s0"].payload_bytes == payload_bytes(parts[0].payload)
        assert registry.verify().ok


def _forged(payload: dict[str, torch.Tensor], encoding: str) -> bytes:
    envelope = json.loads(_meta("silo-a", "float32").canonical_json())
    envelope["encoding"] = encoding
    return save(payload, metadata={META_KEY: json.dumps(envelope)})


def _int8(delta: Delta) -> dict[str, torch.Tensor]:
    return encode(delta, "int8")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda p: {**p, "fc.weight::scale": torch.tensor(float("nan"))}, "NaN"),
        (lambda p: {**p, "fc.weight::scale": torch.tensor(-1.0)}, "negative"),
        (lambda p: {**p, "fc.weight::scale": torch.ones(4)}, "expected torch.float32 ()"),
        (lambda p: {k: v for k, v in p.items() if k != "conv.bias::scale"}, "missing"),
        (lambda p: {**p, "conv.bias::q": torch.full((6,), -128, dtype=torch.int8)}, "below"),
        (lambda p: {**p, "conv.bias::q": torch.zeros(6, dtype=torch.int16)}, "dtype"),
    ],
)
def test_hostile_int8_payloads_are_refused(tamper: object, message: str) -> None:
    payload = tamper(_int8(_delta(4)))  # type: ignore[operator]
    with pytest.raises(ComponentError, match=message):
        component_from_bytes(_forged(payload, "int8"))


def test_unknown_or_mismatched_encodings_are_refused() -> None:
    with pytest.raises(ComponentError, match="metadata is invalid"):
        component_from_bytes(_forged(_delta(5).to_dict(), "int4"))
    with pytest.raises(ComponentError, match="wrong tensors"):
        component_from_bytes(_forged(_delta(5).to_dict(), "int8"))
    bf16 = {k: v.to(torch.bfloat16) for k, v in _delta(5).items()}
    with pytest.raises(ComponentError, match=r"expected torch\.float32"):
        component_from_bytes(_forged(bf16, "float32"))
    nan = dict(bf16)
    nan["conv.bias"] = torch.full((6,), float("nan"), dtype=torch.bfloat16)
    with pytest.raises(ComponentError, match="NaN"):
        component_from_bytes(_forged(nan, "bfloat16"))


def test_a_payload_of_other_shapes_does_not_fit_the_base() -> None:
    payload = _int8(_delta(6))
    payload["conv.bias::q"] = torch.zeros(5, dtype=torch.int8)  # q and scale agree...
    component = component_from_bytes(_forged(payload, "int8"))
    schema = TangentSchema("a" * 64, SHAPES)
    with pytest.raises(ComponentError, match=r"conv\.bias: \(5,\) \(expected \(6,\)\)"):
        validate_component(component, schema)  # ...but not with the base
