"""Components on disk and on the wire: safetensors with the metadata as canonical JSON.

Reading is defensive: the bytes may come from a silo we do not control. The header is
checked before any tensor is materialised (size, dtype, shapes, offsets), and every
failure is a :class:`ComponentError` that names the problem. Nothing is executed (no
pickle), nothing is allocated beyond the declared sizes, which are bounded first.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load, save

from tmc.common.components.component import Component, ComponentMeta
from tmc.common.errors import ComponentError, ComponentSchemaError, NonFiniteError
from tmc.common.files import atomic_write_bytes

META_KEY = "tmc.meta"
ID_KEY = "id"
MAX_HEADER_BYTES = 16 << 20
DEFAULT_MAX_COMPONENT_BYTES = 2 << 30
# safetensors dtypes a payload may hold (common.components.encoding), and their sizes.
_DTYPE_BYTES = {"F32": 4, "BF16": 2, "I8": 1}


def component_to_bytes(component: Component) -> bytes:
    """Serialise to safetensors bytes (deterministic for a given component).

    The metadata is one key holding canonical JSON: safetensors writes several metadata
    keys in hash-map order, which would make the bytes of equal components differ."""
    envelope = json.loads(component.meta.canonical_json())
    envelope[ID_KEY] = component.id
    return save(
        {name: tensor.contiguous() for name, tensor in component.payload.items()},
        metadata={META_KEY: json.dumps(envelope, sort_keys=True, separators=(",", ":"))},
    )


def _check_header(data: bytes) -> dict[str, object]:
    if len(data) < 8:
        raise ComponentError(f"component is truncated: {len(data)} bytes, no safetensors header")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > MAX_HEADER_BYTES or header_len > len(data) - 8:
        raise ComponentError(
            f"component header declares {header_len} bytes but the file has {len(data) - 8} "
            f"after the length field (limit {MAX_HEADER_BYTES}): truncated or not safetensors"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ComponentError(f"component header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ComponentError("component header must be a JSON object")
    body = len(data) - 8 - header_len
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise ComponentError(f"tensor {name!r}: header entry is not an object")
        dtype = entry.get("dtype")
        if dtype not in _DTYPE_BYTES:
            raise ComponentSchemaError(
                f"tensor {name!r} has dtype {dtype}, not one of {sorted(_DTYPE_BYTES)}"
            )
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ComponentError(f"tensor {name!r}: invalid shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= body
        ):
            raise ComponentError(f"tensor {name!r}: data offsets {offsets!r} outside the data")
        size = math.prod(shape) * _DTYPE_BYTES[str(dtype)]
        if offsets[1] - offsets[0] != size:
            raise ComponentError(
                f"tensor {name!r}: shape {shape} needs {size} bytes, "
                f"offsets give {offsets[1] - offsets[0]}"
            )
    return header


def component_from_bytes(data: bytes, *, max_bytes: int = DEFAULT_MAX_COMPONENT_BYTES) -> Component:
    """Parse and check a component: header, tensors, metadata, id, finiteness."""
    if len(data) > max_bytes:
        raise ComponentError(f"component is {len(data)} bytes, over the limit of {max_bytes}")
    header = _check_header(data)
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or META_KEY not in metadata:
        raise ComponentError(f"component has no {META_KEY!r} metadata: not a TMC component")
    try:
        envelope = json.loads(metadata[META_KEY])
        if not isinstance(envelope, dict):
            raise ComponentError("component metadata must be a JSON object")
        claimed = envelope.pop(ID_KEY, None)
        meta = ComponentMeta.model_validate(envelope)
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ComponentError(f"component metadata is invalid: {exc}") from exc
    try:
        tensors = load(data)
    except SafetensorError as exc:
        raise ComponentError(f"component tensors cannot be read: {exc}") from exc
    if not tensors:
        raise ComponentSchemaError("component holds no tensors")
    component = Component.of_payload(tensors, meta)
    if claimed is not None and claimed != component.id:
        raise ComponentError(
            f"component content hashes to {component.id[:12]}… but claims id "
            f"{str(claimed)[:12]}…: it was altered after it was made"
        )
    if not component.delta.is_finite():
        raise NonFiniteError(f"component {component.id[:12]}… contains NaN or Inf")
    return component


def save_component(component: Component, path: Path) -> None:
    """Write atomically (owner-readable only)."""
    atomic_write_bytes(path, component_to_bytes(component))


def load_component(path: Path, *, max_bytes: int = DEFAULT_MAX_COMPONENT_BYTES) -> Component:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ComponentError(f"cannot read component file {path}: {exc}") from exc
    if size > max_bytes:
        raise ComponentError(f"component file {path} is {size} bytes, over {max_bytes}")
    return component_from_bytes(path.read_bytes(), max_bytes=max_bytes)
