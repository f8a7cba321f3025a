"""A client of the admin API that answers like the local registry: the same entities
(``ComponentRecord``, ``ForgetResult``, ``RegistryStatus``...) and the same exceptions
(``NotFoundError``, ``AuthError``...), so callers can use either."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from tmc.common.errors import ConfigError, IntegrityError, NotFoundError, RegistryError, TMCError
from tmc.common.files import atomic_write_bytes
from tmc.server.admin import convert
from tmc.server.admin.errors import (
    AdminAPIError,
    PermissionDeniedError,
    RequestError,
    UnauthenticatedError,
    UnavailableError,
)
from tmc.server.admin.proto import pb, pb_grpc
from tmc.server.registry import (
    AuditEvent,
    ComponentRecord,
    ForgetResult,
    RegistryStatus,
    SiloSummary,
    StatusFilter,
)
from tmc.server.valuation import ForgetPreview, Valuation

MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_ERRORS: dict[grpc.StatusCode, Callable[[str], TMCError]] = {
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INVALID_ARGUMENT: RequestError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RequestError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: RegistryError,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
}
_OUTCOME_UNKNOWN = (
    " Whether a forget sent just now was applied is unknown: list the components, or "
    "repeat it (a repeat is a no-op)."
)


def error_from_rpc(exc: grpc.RpcError, address: str) -> TMCError:
    """The project error for a failed call (its message is the server's, or says why the
    server could not be reached)."""
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    message = details or str(code)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        message = f"the request was refused as too large or too many: {message}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        message = f"the admin API at {address} did not answer ({code.name}: {message})."
        message += _OUTCOME_UNKNOWN
    kind = _ERRORS.get(code)
    if kind is None:
        return AdminAPIError(f"the admin API at {address} failed ({code.name}): {message}")
    return kind(message)


class AdminClient:
    """Talks to ``address`` (``HOST:PORT``) over TLS, trusting ``ca_cert`` (a PEM file or
    bytes; default: the system's roots), or in plain text with ``insecure=True``. ``token``
    is sent with every call as ``authorization: Bearer <token>``."""

    def __init__(
        self,
        address: str,
        *,
        token: str,
        ca_cert: Path | bytes | None = None,
        insecure: bool = False,
        timeout_s: float = 60.0,
        tls_server_name: str | None = None,
    ) -> None:
        if not address or len(address) > 300 or any(c.isspace() for c in address):
            raise ConfigError(f"invalid admin API address {address[:300]!r}: use HOST:PORT")
        token = token.strip()
        if not token:
            raise ConfigError("the admin token is empty")
        if insecure and (ca_cert is not None or tls_server_name is not None):
            raise ConfigError("--insecure (plain text) cannot be combined with TLS options")
        self.address = address
        self._timeout = timeout_s
        self._metadata = (("authorization", f"Bearer {token}"),)
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_RESPONSE_BYTES)]
        if insecure:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            if isinstance(ca_cert, Path):
                try:
                    ca_cert = ca_cert.read_bytes()
                except OSError as exc:
                    raise ConfigError(f"cannot read the CA certificate: {exc}") from exc
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._stub = pb_grpc.RegistryAdminStub(self._channel)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _rpc(self) -> Iterator[None]:
        try:
            yield
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.address) from None

    def _unary(self, method: str, request: Any) -> Any:
        with self._rpc():
            call = getattr(self._stub, method)
            return call(request, metadata=self._metadata, timeout=self._timeout)

    # -- calls (named and shaped like the Registry's) ----------------------------------------

    def list_components(
        self, *, silo: str | None = None, status: StatusFilter = "active"
    ) -> list[ComponentRecord]:
        request = pb.ListComponentsRequest(silo=silo, status=status)
        response = self._unary("ListComponents", request)
        return [convert.component_from_pb(c) for c in response.components]

    def forget(
        self, *, silo: str | None = None, component_id: str | None = None, reason: str = ""
    ) -> ForgetResult:
        """Forget a silo (or one component). The server records the caller (from its
        token) as the actor; a silo token may only forget its own silo's components."""
        if (silo is None) == (component_id is None):
            raise RequestError("forget needs exactly one of silo or component_id")
        request = pb.ForgetRequest(silo=silo, component_id=component_id, reason=reason)
        return convert.forget_from_pb(self._unary("Forget", request))

    def readmit(self, silo: str, *, reason: str = "") -> tuple[str, datetime, datetime | None]:
        """Lift ``silo``'s tombstone (operator token); (silo, forgotten at, readmitted at)."""
        request = pb.ReadmitRequest(silo=silo, reason=reason)
        return convert.readmit_from_pb(self._unary("Readmit", request))

    def status_and_silos(self) -> tuple[RegistryStatus, list[SiloSummary]]:
        return convert.status_from_pb(self._unary("Status", pb.StatusRequest()))

    def status(self) -> RegistryStatus:
        return self.status_and_silos()[0]

    def silos(self) -> list[SiloSummary]:
        return self.status_and_silos()[1]

    def export_bytes(self, *, exclude_silos: Iterable[str] = ()) -> bytes:
        """The composed Δ as safetensors bytes, checked against the trailer's sha256."""
        return self._export(pb.ExportRequest(exclude_silos=sorted(set(exclude_silos))))

    def export_model_bytes(self, version: int | None = None) -> bytes:
        """The full model file of a version (the current one by default), as the registry's
        ``export_model_bytes``, checked against the trailer's sha256."""
        return self._export(pb.ExportRequest(full=True, version=version))

    def export_model(self, path: Path | str, version: int | None = None) -> str:
        """Write :meth:`export_model_bytes` to ``path`` atomically (0o600); its sha256."""
        data = self.export_model_bytes(version)
        atomic_write_bytes(Path(path), data, mode=0o600)
        return hashlib.sha256(data).hexdigest()

    def _export(self, request: pb.ExportRequest) -> bytes:
        parts: list[bytes] = []
        trailer = None
        with self._rpc():
            for chunk in self._stub.Export(request, metadata=self._metadata, timeout=self._timeout):
                if chunk.HasField("trailer"):
                    trailer = chunk.trailer
                    break
                parts.append(chunk.data)
        data = b"".join(parts)
        if trailer is None:
            raise IntegrityError(
                f"the export from {self.address} ended without its trailer (cut off after "
                f"{len(data)} bytes); nothing was written"
            )
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != trailer.size or digest != trailer.sha256:
            raise IntegrityError(
                f"the export from {self.address} does not match its trailer ({len(data)} bytes, "
                f"sha256 {digest}; expected {trailer.size} bytes, {trailer.sha256}); "
                "nothing was written"
            )
        return data

    def export(self, path: Path | str, *, exclude_silos: Iterable[str] = ()) -> str:
        """Write :meth:`export_bytes` to ``path`` atomically (0o600); returns its sha256."""
        data = self.export_bytes(exclude_silos=exclude_silos)
        atomic_write_bytes(Path(path), data, mode=0o600)
        return hashlib.sha256(data).hexdigest()

    def value(
        self,
        *,
        version: int | None = None,
        dataset: str = "digits",
        dataset_root: Path | str | None = None,
        samples: int | None = None,
        seed: int = 0,
    ) -> Valuation:
        """Each silo's values of ``version`` (the current one by default) on the server's
        test split of ``dataset``, as :func:`~tmc.server.valuation.value_version` answers
        locally (operator token)."""
        request = pb.ValueRequest(
            version=version,
            dataset=dataset,
            dataset_root=None if dataset_root is None else str(dataset_root),
            samples=samples,
            seed=seed,
        )
        response = self._unary("Value", request)
        if response.WhichOneof("result") != "valuation_json":
            raise AdminAPIError(f"the admin API at {self.address} answered no valuation")
        return Valuation.model_validate_json(response.valuation_json)

    def preview_forget(
        self, silo: str, *, dataset: str = "digits", dataset_root: Path | str | None = None
    ) -> ForgetPreview:
        """The current version's accuracy with and without ``silo``; nothing is removed
        (operator token)."""
        request = pb.ValueRequest(
            dataset=dataset,
            dataset_root=None if dataset_root is None else str(dataset_root),
            what_if=silo,
        )
        response = self._unary("Value", request)
        if response.WhichOneof("result") != "preview_json":
            raise AdminAPIError(f"the admin API at {self.address} answered no forget preview")
        return ForgetPreview.model_validate_json(response.preview_json)

    def audit_log(self, since: int | None = None, *, page: int = 1000) -> list[AuditEvent]:
        """Events after sequence number ``since`` (all by default), fetched page by page."""
        events: list[AuditEvent] = []
        after = since or 0
        while True:
            request = pb.AuditLogRequest(after_seq=after, limit=page)
            response = self._unary("AuditLog", request)
            events.extend(convert.audit_from_pb(e) for e in response.events)
            if not response.more or not response.events:
                return events
            after = events[-1].seq


def read_token(token_file: Path | None, env_value: str | None) -> str:
    """The admin token from ``--token-file`` (first line) or ``$TMC_ADMIN_TOKEN``."""
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the token file {token_file}: {exc}") from exc
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise ConfigError(f"the token file {token_file} is empty")
        return token
    if env_value and env_value.strip():
        return env_value.strip()
    raise ConfigError(
        "no admin token: pass --token-file FILE or set TMC_ADMIN_TOKEN "
        "(create one with `tmc admin token create`)"
    )


__all__ = ["AdminClient", "error_from_rpc", "read_token"]
