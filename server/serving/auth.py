"""Bearer tokens of the serve API: the admin API's credentials file and its checks.

Any token the file lists (operator or silo) may query the model; the file is re-read when
it changes, so a revoked token stops working without a restart, and an unreadable file
refuses every request (fail closed). Tokens are compared in constant time by hash
(``tmc.server.admin.auth.Authenticator``).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request

from tmc.server.admin.auth import Authenticator, Principal, read_credentials
from tmc.server.admin.errors import UnauthenticatedError


class BearerAuth:
    """A FastAPI dependency: the request's principal, or an AuthError (401/503)."""

    def __init__(self, credentials: Path) -> None:
        read_credentials(credentials)  # a broken file is refused here, before any logging
        self._authenticator = Authenticator(credentials)

    def __call__(self, request: Request) -> Principal:
        headers = [("authorization", value) for value in request.headers.getlist("authorization")]
        if not headers:  # the admin API's own message speaks of gRPC metadata
            raise UnauthenticatedError(
                "no credential: send the header 'Authorization: Bearer <token>'"
            )
        return self._authenticator.authenticate(headers)


__all__ = ["BearerAuth"]
