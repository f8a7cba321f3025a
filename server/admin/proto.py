"""The Python code generated from ``admin.proto``, with a clear error when it is missing or
older than the .proto (the build generates it: ``pip install -e .`` or ``make install``).

``pb`` holds the messages (typed through the generated ``admin_pb2.pyi``); ``pb_grpc``
holds the service's stub, servicer base class and registration function (grpc itself ships
no type information, so it is typed ``Any``).
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from tmc.common.errors import ConfigError

PROTO = Path(__file__).with_name("admin.proto")
_REBUILD = "run `make install` (or `pip install -e .`) to regenerate it"


def _load(name: str) -> ModuleType:
    module = "tmc.server.admin._generated" + (f".{name}" if name else "")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"the admin API's generated code ({module}) is missing or does not match the "
            f"installed grpcio/protobuf ({exc}): {_REBUILD}; the admin API is unavailable"
        ) from exc


def _check_fresh() -> None:
    generated = _load("")
    if not PROTO.is_file():  # an installation without the source: nothing to compare
        return
    current = hashlib.sha256(PROTO.read_bytes()).hexdigest()
    if getattr(generated, "PROTO_SHA256", None) != current:
        raise ConfigError(
            f"{PROTO} changed since its Python code was generated: {_REBUILD}; the admin "
            "API is unavailable until then"
        )


_check_fresh()
_load("admin_pb2")  # fails with the message above when absent or incompatible

from tmc.server.admin._generated import admin_pb2 as pb  # noqa: E402

pb_grpc: Any = _load("admin_pb2_grpc")

SERVICE = "tmc.admin.v1.RegistryAdmin"

__all__ = ["PROTO", "SERVICE", "pb", "pb_grpc"]
