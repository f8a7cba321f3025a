"""The request size limit, enforced before a body is read (pure ASGI middleware).

A declared ``Content-Length`` over the limit is refused with 413 at once, without reading
a byte of the body; a body without one (chunked) is counted as it arrives and refused as
soon as it passes the limit. Either way no oversized body is ever held in memory.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tmc.server.serving.errors import RequestTooLargeError


def _too_large(limit: int, size: int | None) -> str:
    told = f"of {size} bytes " if size is not None else ""
    return f"the request body {told}exceeds this server's limit of {limit} bytes (--max-body-mb)"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
        if declared:
            text = declared[0].decode("latin-1").strip()
            if len(declared) > 1 or not text.isdigit():
                await self._refuse(
                    scope,
                    receive,
                    send,
                    400,
                    "the Content-Length header is malformed (one decimal number)",
                )
                return
            if int(text) > self.max_bytes:
                await self._refuse(scope, receive, send, 413, _too_large(self.max_bytes, int(text)))
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLargeError(_too_large(self.max_bytes, None))
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
        kind = "RequestTooLargeError" if status == 413 else "RequestError"
        # The connection is closed after the answer: the unread body is never consumed.
        response = JSONResponse(
            {"error": kind, "message": text}, status_code=status, headers={"connection": "close"}
        )
        await response(scope, receive, send)


__all__ = ["BodySizeLimit"]
