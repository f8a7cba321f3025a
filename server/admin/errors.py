"""Errors of the admin API, refining the project's (``common.errors``).

The server turns each into one gRPC status code; the client turns status codes back into
these, so a caller of :class:`~server.admin.client.AdminClient` catches the same
exceptions as a caller of the local :class:`~server.registry.Registry`
(``NotFoundError``, ``RegistryError``, ``AuthError``, ...).
"""

from __future__ import annotations

from tmc.common.errors import AuthError, TMCError


class UnauthenticatedError(AuthError):
    """No credential, or one the server does not know (gRPC UNAUTHENTICATED)."""


class PermissionDeniedError(AuthError):
    """The credential is valid but not allowed to do this (gRPC PERMISSION_DENIED)."""


class AdminAPIError(TMCError):
    """The admin API could not carry out a request (base of the errors below)."""


class RequestError(AdminAPIError, ValueError):
    """A request is malformed or too large (INVALID_ARGUMENT, RESOURCE_EXHAUSTED); it was
    refused before anything was changed."""


class UnavailableError(AdminAPIError):
    """The server could not be reached or did not answer (UNAVAILABLE, DEADLINE_EXCEEDED).
    Whether a request that changes something was applied is unknown: repeating a forget is
    safe (a repeat is a no-op)."""


class CredentialsError(AdminAPIError):
    """A credentials file is missing, malformed or readable by others."""
