"""Start the admin API: a gRPC server over TLS (plain text only when asked explicitly) that
serves one registry to callers holding a credential (see ``auth.py``), with the standard
gRPC health service beside it (``grpc.health.v1.Health``, no credential needed: it says
only SERVING or NOT_SERVING) and, when asked, Prometheus ``/metrics`` on an HTTP port."""

from __future__ import annotations

import logging
import stat
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tmc.common.errors import ConfigError
from tmc.server.admin.auth import Authenticator
from tmc.server.admin.metrics import MetricsServer
from tmc.server.admin.service import RegistryAdminService, add_to_server
from tmc.server.registry import Registry

_log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
"""Largest request message accepted; a larger one is refused with RESOURCE_EXHAUSTED."""

ADMIN_SERVICE = "tmc.admin.v1.RegistryAdmin"
"""The admin API's gRPC service name, as health checks name it."""


@dataclass(frozen=True)
class TLSFiles:
    """The server's certificate chain and private key (PEM files)."""

    cert: Path
    key: Path

    def credentials(self) -> Any:
        try:
            cert, key = self.cert.read_bytes(), self.key.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the TLS certificate or key: {exc}") from exc
        if stat.S_IMODE(self.key.stat().st_mode) & 0o077:
            _log.warning("the TLS key %s is readable by other users: chmod 600 it", self.key)
        return grpc.ssl_server_credentials([(key, cert)])


def bind_address(host: str, port: int) -> str:
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"invalid host {host!r}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"invalid port {port}: use 0 (any free port) to 65535")
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class AdminServer:
    """A running admin API. ``port`` is the bound port (useful when asked for port 0).
    ``stop()`` finishes the calls in flight (up to ``grace`` seconds), then closes the
    registry if the server opened it."""

    def __init__(
        self,
        server: Any,
        registry: Registry,
        *,
        owns_registry: bool,
        host: str,
        port: int,
        tls: bool,
        health_servicer: health.HealthServicer,
        metrics: MetricsServer | None = None,
    ) -> None:
        self._server = server
        self._health = health_servicer
        self.metrics = metrics
        self._registry = registry
        self._owns_registry = owns_registry
        self.host = host
        self.port = port
        self.tls = tls
        self._stopped = False

    @property
    def address(self) -> str:
        return bind_address(self.host, self.port)

    def stop(self, grace: float | None = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._health.enter_graceful_shutdown()  # health checks see NOT_SERVING from now
        if self.metrics is not None:
            self.metrics.stop()
        self._server.stop(grace).wait()
        if self._owns_registry:
            self._registry.close()
        _log.info("admin API on %s stopped", self.address)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or ``timeout`` passes (False)."""
        return bool(self._server.wait_for_termination(timeout))

    def __enter__(self) -> AdminServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    registry: Registry | Path | str,
    *,
    credentials_path: Path | str,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: TLSFiles | None = None,
    insecure: bool = False,
    max_workers: int = 16,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> AdminServer:
    """Serve ``registry`` (an open one, or a folder to open) on ``host:port`` and return at
    once. TLS needs ``tls``; plain text needs ``insecure=True`` and no ``tls``. With
    ``metrics_port`` (0: any free one), ``/metrics`` is served on ``metrics_host``."""
    if tls is None and not insecure:
        raise ConfigError(
            "the admin API needs TLS (a certificate and key); plain text only with an explicit "
            "insecure=True (--insecure); nothing was started"
        )
    if tls is not None and insecure:
        raise ConfigError("give either TLS files or insecure=True, not both; nothing was started")
    if max_workers < 1 or max_request_bytes < 1024:
        raise ConfigError("max_workers must be >= 1 and max_request_bytes >= 1024")
    address = bind_address(host, port)
    if insecure and host not in ("127.0.0.1", "::1", "localhost"):
        _log.warning(
            "admin API on %s WITHOUT TLS: tokens and models cross the network in clear text",
            address,
        )
    server_credentials = tls.credentials() if tls is not None else None
    authenticator = Authenticator(Path(credentials_path))
    owns = not isinstance(registry, Registry)
    opened = (
        registry if isinstance(registry, Registry) else Registry.open(registry, actor="admin-api")
    )
    metrics: MetricsServer | None = None
    try:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tmc-admin"),
            options=[
                ("grpc.max_receive_message_length", max_request_bytes),
                # Never share the port with another process (Linux's SO_REUSEPORT default).
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=max_workers * 8,
        )
        add_to_server(RegistryAdminService(opened, authenticator), server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        try:
            if server_credentials is not None:
                bound = server.add_secure_port(address, server_credentials)
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {address} (in use?): {exc}") from exc
        if not bound:
            raise ConfigError(f"cannot listen on {address} (in use, or not an address here)")
        metrics = (
            MetricsServer(opened, host=metrics_host, port=metrics_port)
            if metrics_port is not None
            else None
        )
        server.start()
        for name in ("", ADMIN_SERVICE):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        if metrics is not None:
            metrics.stop()
        if owns:
            opened.close()
        raise
    handle = AdminServer(
        server,
        opened,
        owns_registry=owns,
        host=host,
        port=bound,
        tls=tls is not None,
        health_servicer=health_servicer,
        metrics=metrics,
    )
    _log.info(
        "admin API serving registry %s on %s (%s); credentials from %s",
        opened.root,
        handle.address,
        "TLS" if tls is not None else "PLAIN TEXT, --insecure",
        authenticator.path,
    )
    return handle
