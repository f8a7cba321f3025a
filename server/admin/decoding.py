"""Request bodies that do not parse: refused as INVALID_ARGUMENT, not INTERNAL.

gRPC parses a request before the servicer sees it, and answers a body that is not the
method's message with INTERNAL ("Exception deserializing request"), as if the server were
at fault. Here each generated handler's parser is wrapped: a body that does not parse
becomes an :class:`Undecodable` marker, and the call is refused with INVALID_ARGUMENT and
the parser's reason before the servicer runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError

_log = logging.getLogger(__name__)


class Undecodable:
    """A request body that is not the method's message (why, in ``reason``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parser(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Undecodable(str(exc) or "malformed protobuf")

    return deserialize


def _guarded(method: str, behaviour: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            _log.warning("admin %s refused (INVALID_ARGUMENT): %s", method, request.reason)
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {method} message: {request.reason}",
            )
        return behaviour(request, context)

    return call


def tolerant(method: str, handler: Any) -> Any:
    """``handler`` (a generated unary-unary or unary-stream RpcMethodHandler) with the
    parser and guard above."""
    changes: dict[str, Any] = {"request_deserializer": _parser(handler.request_deserializer)}
    for kind in ("unary_unary", "unary_stream"):
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            changes[kind] = _guarded(method, behaviour)
    return handler._replace(**changes)


class TolerantRegistrar:
    """Stands in for the gRPC server in a generated ``add_*Servicer_to_server``: takes the
    generated handlers and registers their tolerant versions with the real server."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        """Ignored: the same handlers come again, by name, to the method below."""

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        wrapped = {name: tolerant(name, handler) for name, handler in handlers.items()}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, wrapped),)
        )
        self._server.add_registered_method_handlers(service, wrapped)


__all__ = ["TolerantRegistrar", "Undecodable", "tolerant"]
