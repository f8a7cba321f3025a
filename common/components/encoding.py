"""How a component's Δ travels and is stored: float32, bfloat16 or int8 (per tensor or per
output channel), decoded to exact float32 values on arrival.

A silo encodes its Δ before upload; the server stores what it received (the *payload*) and
composes the decoded values. Decoding is a fixed function of the payload (bfloat16 →
float32 is exact; int8 is ``q · scale`` in float32), so every machine decodes the same
bytes to the same values, and composition, forgetting and verification stay bit-exact on
them. int8 is symmetric (q in [-127, 127], scale = max|Δ| / 127), as in the usual
post-training weight quantisation (Jacob et al., CVPR 2018), per tensor or per slice of the
first dimension (a conv's or a linear layer's output channels).

Payload keys: float32 and bfloat16 keep the parameter's name; int8 stores ``<name>::q``
(int8) and ``<name>::scale`` (float32, shape () per tensor, (C,) per channel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal, get_args

import torch

from tmc.common.components.delta import Delta
from tmc.common.errors import ComponentError, ComponentSchemaError, NonFiniteError

Encoding = Literal["float32", "bfloat16", "int8", "int8-channel"]
ENCODINGS: tuple[Encoding, ...] = get_args(Encoding)
UNENCODED: Encoding = "float32"
"""Δ as trained: the run config's default upload-dtype, and what a record written before
encodings existed holds."""
Q_SUFFIX = "::q"
SCALE_SUFFIX = "::scale"
INT8_MAX = 127

Payload = dict[str, torch.Tensor]
Layout = dict[str, tuple[torch.dtype, tuple[int, ...]]]


def _scale_shape(shape: tuple[int, ...], encoding: Encoding) -> tuple[int, ...]:
    return (shape[0],) if encoding == "int8-channel" and len(shape) >= 1 else ()


def payload_layout(shapes: Mapping[str, tuple[int, ...]], encoding: Encoding) -> Layout:
    """Every payload key with its dtype and shape, for Δ of ``shapes`` in ``encoding``."""
    if encoding == "float32":
        return {n: (torch.float32, tuple(s)) for n, s in shapes.items()}
    if encoding == "bfloat16":
        return {n: (torch.bfloat16, tuple(s)) for n, s in shapes.items()}
    layout: Layout = {}
    for name, shape in shapes.items():
        layout[name + Q_SUFFIX] = (torch.int8, tuple(shape))
        layout[name + SCALE_SUFFIX] = (torch.float32, _scale_shape(tuple(shape), encoding))
    return layout


def encode(delta: Delta, encoding: Encoding) -> Payload:
    """The payload of ``delta`` in ``encoding`` (lossy except for float32)."""
    if encoding == "float32":
        return delta.to_dict()
    if encoding == "bfloat16":
        return {n: t.to(torch.bfloat16) for n, t in delta.items()}
    payload: Payload = {}
    for name, tensor in delta.items():
        if encoding == "int8-channel" and tensor.dim() >= 1:
            flat = tensor.reshape(tensor.shape[0], -1)
            peak = flat.abs().amax(dim=1) if flat.shape[1] else torch.zeros(tensor.shape[0])
        else:
            peak = tensor.abs().max() if tensor.numel() else torch.zeros(())
        scale = (peak / INT8_MAX).to(torch.float32)
        view = scale.reshape(-1, *([1] * (tensor.dim() - 1))) if scale.dim() else scale
        safe = torch.where(view > 0, view, torch.ones_like(view))
        q = torch.round(tensor / safe).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
        payload[name + Q_SUFFIX] = q.contiguous()
        payload[name + SCALE_SUFFIX] = scale.contiguous()
    return payload


def payload_shapes(payload: Mapping[str, torch.Tensor], encoding: Encoding) -> dict[str, tuple]:
    """The Δ shapes a payload describes (its parameter names and their shapes)."""
    if encoding in ("float32", "bfloat16"):
        return {n: tuple(t.shape) for n, t in payload.items()}
    return {
        n.removesuffix(Q_SUFFIX): tuple(t.shape) for n, t in payload.items() if n.endswith(Q_SUFFIX)
    }


def check_payload(payload: Mapping[str, torch.Tensor], encoding: Encoding) -> dict[str, tuple]:
    """Raise a ComponentError naming the problem unless ``payload`` is a well-formed
    ``encoding`` payload (keys, dtypes, shapes, finite non-negative scales, q in range);
    returns the Δ shapes it describes."""
    if encoding not in ENCODINGS:
        raise ComponentSchemaError(f"unknown encoding {encoding!r}: expected one of {ENCODINGS}")
    shapes = payload_shapes(payload, encoding)
    layout = payload_layout(shapes, encoding)
    missing, extra = sorted(set(layout) - set(payload)), sorted(set(payload) - set(layout))
    if missing or extra:
        raise ComponentSchemaError(
            f"{encoding} payload has the wrong tensors: missing {missing[:5]}, unexpected "
            f"{extra[:5]}"
        )
    for key, (dtype, shape) in layout.items():
        tensor = payload[key]
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise ComponentSchemaError(
                f"{encoding} payload tensor {key!r} is {tensor.dtype} {tuple(tensor.shape)}, "
                f"expected {dtype} {shape}"
            )
    if encoding.startswith("int8"):
        for key, tensor in payload.items():
            if key.endswith(SCALE_SUFFIX):
                if not bool(torch.isfinite(tensor).all()):
                    raise NonFiniteError(f"int8 scale {key!r} is NaN or infinite")
                if bool((tensor < 0).any()):
                    raise ComponentError(f"int8 scale {key!r} is negative")
            elif tensor.numel() and int(tensor.min()) < -INT8_MAX:
                raise ComponentError(f"int8 values of {key!r} go below -{INT8_MAX} (symmetric)")
    return shapes


def decode(payload: Mapping[str, torch.Tensor], encoding: Encoding) -> Delta:
    """The exact float32 Δ a (checked) payload stands for."""
    check_payload(payload, encoding)
    if encoding == "float32":
        return Delta(dict(payload))
    if encoding == "bfloat16":
        return Delta({n: t.to(torch.float32) for n, t in payload.items()})
    tensors: dict[str, torch.Tensor] = {}
    for name in payload_shapes(payload, encoding):
        q, scale = payload[name + Q_SUFFIX], payload[name + SCALE_SUFFIX]
        view = scale.reshape(-1, *([1] * (q.dim() - 1))) if scale.dim() else scale
        tensors[name] = (q.to(torch.float32) * view).contiguous()
    return Delta(tensors)


def payload_bytes(payload: Mapping[str, torch.Tensor]) -> int:
    """Bytes of the payload's tensor data (what an upload costs, headers aside)."""
    return sum(t.numel() * t.element_size() for t in payload.values())


def dense_bytes(shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Bytes of the same Δ in float32."""
    return 4 * sum(math.prod(s) for s in shapes.values())


__all__ = [
    "ENCODINGS",
    "UNENCODED",
    "Encoding",
    "Payload",
    "check_payload",
    "decode",
    "dense_bytes",
    "encode",
    "payload_bytes",
    "payload_layout",
    "payload_shapes",
]
