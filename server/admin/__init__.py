"""The admin API: gRPC over TLS (``admin.proto``) to list, forget, inspect and export a
registry, for the operator and, for their own components, the silos.

    server = serve("runs/reg", credentials_path="admin-credentials.json",
                   tls=TLSFiles(Path("server.pem"), Path("server.key")), port=50070)
    with AdminClient("localhost:50070", token=token, ca_cert=Path("ca.pem")) as client:
        client.forget(silo="hospital-b", reason="withdrew consent")
    server.stop()

The Python code for the messages and the service is generated from ``admin.proto`` by the
build (``setup.py``) into ``server/admin/_generated/``.
"""

from __future__ import annotations

from tmc.server.admin.auth import Authenticator, Principal, create_token, revoke_token
from tmc.server.admin.client import AdminClient, read_token
from tmc.server.admin.errors import (
    AdminAPIError,
    CredentialsError,
    PermissionDeniedError,
    RequestError,
    UnauthenticatedError,
    UnavailableError,
)
from tmc.server.admin.metrics import (
    REFUSAL_KINDS,
    MetricsServer,
    RegistryCollector,
    refusal_kind,
)
from tmc.server.admin.server import (
    ADMIN_SERVICE,
    MAX_REQUEST_BYTES,
    AdminServer,
    TLSFiles,
    serve,
)

__all__ = [
    "ADMIN_SERVICE",
    "MAX_REQUEST_BYTES",
    "REFUSAL_KINDS",
    "AdminAPIError",
    "AdminClient",
    "AdminServer",
    "Authenticator",
    "CredentialsError",
    "MetricsServer",
    "PermissionDeniedError",
    "Principal",
    "RegistryCollector",
    "RequestError",
    "TLSFiles",
    "UnauthenticatedError",
    "UnavailableError",
    "create_token",
    "read_token",
    "refusal_kind",
    "revoke_token",
    "serve",
]
