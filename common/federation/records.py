"""Packing pydantic models, components and tensors into Flower records, and back.

Unpacking is defensive: replies come from nodes we do not control. Arrays are checked for
type, dtype and declared shape before they are deserialised (``np.load`` without pickle),
and again after; every failure is a :class:`ProtocolError` or a :class:`ComponentError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from pydantic import ValidationError

from tmc.common.components.component import Component, ComponentMeta
from tmc.common.components.encoding import Layout, payload_layout
from tmc.common.errors import ComponentSchemaError, ProtocolError
from tmc.common.federation.messages import DELTA, JSON_KEY, REPLY
from tmc.common.schema import StrictModel

ModelT = TypeVar("ModelT", bound=StrictModel)

_NUMPY_STYPE = "numpy.ndarray"


def pack(model: StrictModel) -> ConfigRecord:
    return ConfigRecord({JSON_KEY: model.model_dump_json()})


def unpack(content: RecordDict, key: str, cls: type[ModelT]) -> ModelT:
    """The pydantic model stored under ``key``, or a ProtocolError naming what is wrong."""
    record = content.config_records.get(key)
    if record is None:
        raise ProtocolError(f"message has no {key!r} config record")
    payload = record.get(JSON_KEY)
    if not isinstance(payload, str):
        raise ProtocolError(f"{key!r} record has no JSON payload")
    try:
        return cls.model_validate_json(payload)
    except ValidationError as exc:
        raise ProtocolError(f"{key!r} is not a valid {cls.__name__}: {exc}") from exc


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    flat = tensor.detach().cpu().contiguous()
    # NumPy has no bfloat16: its bits travel as uint16 and are viewed back on arrival.
    return (flat.view(torch.uint16) if flat.dtype == torch.bfloat16 else flat).numpy()


def tensors_to_arrays(tensors: Mapping[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord({name: Array(_to_numpy(tensors[name])) for name in sorted(tensors)})


def _wire_dtype(dtype: torch.dtype) -> str:
    """The NumPy dtype a tensor of ``dtype`` travels as."""
    return "uint16" if dtype == torch.bfloat16 else str(dtype).removeprefix("torch.")


def arrays_to_tensors(
    record: ArrayRecord,
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    dtype: str | None = None,
    layout: Layout | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors from an ArrayRecord; with ``shapes``/``dtype`` (or a per-key ``layout`` of
    torch dtypes and shapes), anything else is refused before a byte is deserialised."""
    if layout is not None:
        extra = sorted(set(record) - set(layout))
        if extra:
            raise ComponentSchemaError(f"arrays the payload does not have: {extra[:5]}")
        decoded: dict[str, torch.Tensor] = {}
        for (dtype_name, torch_dtype), group in _by_dtype(layout).items():
            part = ArrayRecord({k: record[k] for k in group if k in record})
            missing = sorted(set(group) - set(part))
            if missing:
                raise ComponentSchemaError(f"arrays missing from the reply: {missing[:5]}")
            got = arrays_to_tensors(part, shapes={k: layout[k][1] for k in group}, dtype=dtype_name)
            for key, wire in got.items():
                decoded[key] = wire.view(torch_dtype) if torch_dtype == torch.bfloat16 else wire
        return decoded
    if shapes is not None:
        missing, extra = sorted(set(shapes) - set(record)), sorted(set(record) - set(shapes))
        if missing or extra:
            raise ComponentSchemaError(
                f"arrays do not match the base's tangent parameters: missing {missing[:5]}, "
                f"unexpected {extra[:5]}"
            )
    tensors: dict[str, torch.Tensor] = {}
    for name in record:
        array = record[name]
        if not isinstance(array, Array) or array.stype != _NUMPY_STYPE:
            raise ProtocolError(f"array {name!r} is not a numpy array")
        expected = tuple(shapes[name]) if shapes is not None else None
        if dtype is not None and array.dtype != dtype:
            raise ComponentSchemaError(f"array {name!r} has dtype {array.dtype}, not {dtype}")
        if expected is not None and tuple(array.shape) != expected:
            raise ComponentSchemaError(
                f"array {name!r} has shape {tuple(array.shape)}, expected {expected}"
            )
        try:
            value = array.numpy()
        except (ValueError, TypeError, OSError) as exc:
            raise ProtocolError(f"array {name!r} cannot be decoded: {exc}") from exc
        if (dtype is not None and str(value.dtype) != dtype) or (
            expected is not None and tuple(value.shape) != expected
        ):
            raise ComponentSchemaError(
                f"array {name!r} decodes to {value.dtype}{tuple(value.shape)}, "
                "not what its header declared"
            )
        tensors[name] = torch.from_numpy(np.array(value, copy=True))
    return tensors


def _by_dtype(layout: Layout) -> dict[tuple[str, torch.dtype], list[str]]:
    groups: dict[tuple[str, torch.dtype], list[str]] = {}
    for key, (torch_dtype, _) in layout.items():
        groups.setdefault((_wire_dtype(torch_dtype), torch_dtype), []).append(key)
    return groups


def component_to_content(component: Component) -> RecordDict:
    """A reply carrying one component: its payload (Δ as encoded) and its metadata."""
    return RecordDict(
        {
            DELTA: tensors_to_arrays(component.payload),
            REPLY: ConfigRecord({JSON_KEY: component.meta.canonical_json()}),
        }
    )


def component_from_content(
    content: RecordDict, *, shapes: Mapping[str, tuple[int, ...]]
) -> Component:
    """The component in a reply: its payload checked against the layout that ``shapes`` and
    its stated encoding imply, then decoded exactly."""
    arrays = content.array_records.get(DELTA)
    if arrays is None:
        raise ProtocolError(f"reply has no {DELTA!r} array record")
    meta = unpack(content, REPLY, ComponentMeta)
    layout = payload_layout(shapes, meta.encoding)
    return Component.of_payload(arrays_to_tensors(arrays, layout=layout), meta)


def content_bytes(content: RecordDict) -> int:
    """Bytes of a message's records as Flower counts them (``count_bytes``)."""
    return sum(record.count_bytes() for record in content.values())
