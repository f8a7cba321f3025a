"""The admin API's servicer: authenticates each call, validates it, maps it to one
:class:`~server.registry.Registry` call, and maps errors to gRPC status codes.

Every check (credential, permission, request shape) runs before the registry is touched, so
a refused request changes nothing: no version, no audit event. Refusals are logged (with
the caller's role and label, never its token); accepted calls that change the registry
are recorded in its audit log with the caller as actor (``operator/<label>`` or
``silo:<name>/<label>``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast, get_args

import grpc
from pydantic import ValidationError

from tmc.common.components.component import SHA256_PATTERN, SILO_PATTERN
from tmc.common.data.spec import DatasetName
from tmc.common.errors import AuthError, IntegrityError, NotFoundError, TMCError
from tmc.server.admin import convert
from tmc.server.admin.auth import Authenticator, Principal
from tmc.server.admin.decoding import TolerantRegistrar
from tmc.server.admin.errors import (
    CredentialsError,
    PermissionDeniedError,
    RequestError,
    UnauthenticatedError,
)
from tmc.server.admin.proto import pb, pb_grpc
from tmc.server.receipts import ReceiptSigner, forget_with_receipt
from tmc.server.registry import (
    COMPOSITION_KEY,
    Registry,
    RegistryClosedError,
    RegistryLockedError,
    StatusFilter,
)
from tmc.server.registry.blobs import safetensors_metadata
from tmc.server.registry.model_file import require_data
from tmc.server.valuation import preview_forget, value_version
from tmc.server.valuation.split import evaluation_split

_log = logging.getLogger(__name__)
T = TypeVar("T")

CHUNK_BYTES = 1 << 20
"""Export chunk size: well under the client's 4 MiB default message limit."""
AUDIT_PAGE = 1000
MAX_AUDIT_PAGE = 10_000
MAX_REASON_CHARS = 1000
MAX_EXCLUDED_SILOS = 1000
DEFAULT_VALUE_SAMPLES = 200
MAX_VALUE_SAMPLES = 100_000
MAX_PATH_CHARS = 4096
DATASETS: tuple[str, ...] = get_args(DatasetName)
STATUSES: dict[str, StatusFilter] = {"active": "active", "forgotten": "forgotten", "all": "all"}
_SILO = re.compile(SILO_PATTERN)
_SHA256 = re.compile(SHA256_PATTERN)


def _status_code(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status of an error raised while serving a call."""
    table: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
        (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
        (CredentialsError, grpc.StatusCode.UNAVAILABLE),
        (AuthError, grpc.StatusCode.PERMISSION_DENIED),
        (RequestError, grpc.StatusCode.INVALID_ARGUMENT),
        (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError, grpc.StatusCode.NOT_FOUND),
        (RegistryLockedError, grpc.StatusCode.UNAVAILABLE),
        (RegistryClosedError, grpc.StatusCode.UNAVAILABLE),
        (IntegrityError, grpc.StatusCode.DATA_LOSS),
        (TMCError, grpc.StatusCode.FAILED_PRECONDITION),
    )
    for kind, code in table:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _shown(value: str) -> str:
    """A client-supplied value, quoted and cut short for an error message."""
    return repr(value[:64] + ("…" if len(value) > 64 else ""))


def _check_silo(value: str, what: str = "silo") -> str:
    if not _SILO.fullmatch(value):
        raise RequestError(
            f"{what} {_shown(value)} is not a valid silo name (letters, digits, '.', '_', '-'; "
            "1 to 64 characters, not starting with a punctuation mark)"
        )
    return value


def _deny(principal: Principal, what: str) -> NoReturn:
    raise PermissionDeniedError(
        f"the token {principal.label!r} ({principal.role}) may not {what}; nothing was changed"
    )


class RegistryAdminService(pb_grpc.RegistryAdminServicer):
    """Serves one open registry (shared by every call: it is thread-safe, and SQLite
    serialises it with other processes, e.g. a ServerApp writing the same registry)."""

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticator,
        signer: ReceiptSigner | None = None,
    ) -> None:
        self._registry = registry
        self._auth = authenticator
        # Forget receipts are signed with the registry's own key unless one is given.
        self._signer = signer or ReceiptSigner.for_registry(registry.root)

    # -- plumbing ----------------------------------------------------------------------------

    def _call(
        self, method: str, context: grpc.ServicerContext, body: Callable[[Principal], T]
    ) -> T:
        principal: Principal | None = None
        try:
            principal = self._auth.authenticate(context.invocation_metadata())
            return body(principal)
        except Exception as exc:  # every error becomes a status; nothing escapes unmapped
            code = _status_code(exc)
            who = principal.actor if principal else "an unauthenticated caller"
            if code == grpc.StatusCode.INTERNAL:
                _log.exception("admin %s by %s failed", method, who)
                message = "internal error (logged by the server); check the registry's state"
            else:
                _log.warning("admin %s by %s refused (%s): %s", method, who, code.name, exc)
                message = str(exc)
        context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    # -- calls -------------------------------------------------------------------------------

    def ListComponents(  # noqa: N802  (the name is the .proto's)
        self, request: pb.ListComponentsRequest, context: grpc.ServicerContext
    ) -> pb.ListComponentsResponse:
        def body(principal: Principal) -> pb.ListComponentsResponse:
            silo = request.silo if request.HasField("silo") else principal.silo
            if silo is not None:
                _check_silo(silo)
                if not principal.may_touch(silo):
                    _deny(principal, f"list the components of silo {silo!r}")
            elif not principal.is_operator:  # pragma: no cover  (a silo token has a silo)
                _deny(principal, "list every silo's components")
            status = STATUSES.get(request.status or "active")
            if status is None:
                raise RequestError(
                    f"status {_shown(request.status)} is not one of {', '.join(STATUSES)}"
                )
            records = self._registry.list_components(silo=silo, status=status)
            return pb.ListComponentsResponse(
                components=[convert.component_to_pb(r) for r in records]
            )

        return self._call("ListComponents", context, body)

    def Forget(  # noqa: N802  (the name is the .proto's)
        self, request: pb.ForgetRequest, context: grpc.ServicerContext
    ) -> pb.ForgetResponse:
        def body(principal: Principal) -> pb.ForgetResponse:
            has_silo, has_id = request.HasField("silo"), request.HasField("component_id")
            if has_silo == has_id:
                raise RequestError(
                    "a forget needs exactly one of silo or component_id "
                    f"(got {'both' if has_silo else 'neither'}); nothing was changed"
                )
            if len(request.reason) > MAX_REASON_CHARS:
                raise RequestError(f"the reason is longer than {MAX_REASON_CHARS} characters")
            if has_silo:
                silo = _check_silo(request.silo)
                if not principal.may_touch(silo):
                    _deny(principal, f"forget the components of silo {silo!r}")
                result, receipt = forget_with_receipt(
                    self._registry,
                    self._signer,
                    silo=silo,
                    actor=principal.actor,
                    reason=request.reason,
                )
            else:
                component_id = request.component_id
                if not _SHA256.fullmatch(component_id):
                    raise RequestError(
                        f"component_id {_shown(component_id)} is not 64 lowercase hex digits"
                    )
                owner = self._registry.component_record(component_id).silo
                if not principal.may_touch(owner):
                    _deny(principal, f"forget component {component_id[:12]}… of another silo")
                result, receipt = forget_with_receipt(
                    self._registry,
                    self._signer,
                    component_id=component_id,
                    actor=principal.actor,
                    reason=request.reason,
                )
            _log.info(
                "admin Forget by %s: %s, removed %d component(s), version %d",
                principal.actor,
                f"silo {request.silo}" if has_silo else f"component {request.component_id[:12]}",
                len(result.removed),
                result.version.number,
            )
            return convert.forget_to_pb(result.model_copy(update={"receipt": receipt.to_json()}))

        return self._call("Forget", context, body)

    def Status(  # noqa: N802  (the name is the .proto's)
        self, request: pb.StatusRequest, context: grpc.ServicerContext
    ) -> pb.StatusResponse:
        def body(principal: Principal) -> pb.StatusResponse:
            if not principal.is_operator:
                _deny(principal, "read the registry's status (operator only)")
            return convert.status_to_pb(self._registry.status(), self._registry.silos())

        return self._call("Status", context, body)

    def Export(  # noqa: N802  (the name is the .proto's)
        self, request: pb.ExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportChunk]:
        def body(principal: Principal) -> tuple[bytes, int]:
            if not principal.is_operator:
                _deny(principal, "export the composed model (operator only)")
            excluded = list(request.exclude_silos)
            if len(excluded) > MAX_EXCLUDED_SILOS:
                raise RequestError(f"at most {MAX_EXCLUDED_SILOS} silos may be excluded")
            for silo in excluded:
                _check_silo(silo, "excluded silo")
            if request.full:
                if excluded:
                    raise RequestError(
                        "a full model is a version's model: exclude_silos applies to the "
                        "composed Δ only"
                    )
                version = request.version if request.HasField("version") else None
                if version is not None and version < 1:
                    raise RequestError(f"version must be >= 1, got {version}")
                number = self._registry.version(version).number
                data = self._registry.export_model_bytes(number, actor=principal.actor)
                _log.info(
                    "admin Export (model, version %d) by %s: %d bytes",
                    number,
                    principal.actor,
                    len(data),
                )
                return data, self._registry.version(number).count
            if request.HasField("version"):
                raise RequestError("version applies to a full model export (full=true)")
            data = self._registry.export_bytes(exclude_silos=excluded, actor=principal.actor)
            info = json.loads(safetensors_metadata(data)[COMPOSITION_KEY])
            _log.info("admin Export by %s: %d bytes", principal.actor, len(data))
            return data, int(info["count"])

        data, count = self._call("Export", context, body)
        for start in range(0, len(data), CHUNK_BYTES):
            yield pb.ExportChunk(data=data[start : start + CHUNK_BYTES])
        trailer = pb.ExportTrailer(
            sha256=hashlib.sha256(data).hexdigest(), size=len(data), count=count
        )
        yield pb.ExportChunk(trailer=trailer)

    def Readmit(  # noqa: N802  (the name is the .proto's)
        self, request: pb.ReadmitRequest, context: grpc.ServicerContext
    ) -> pb.ReadmitResponse:
        def body(principal: Principal) -> pb.ReadmitResponse:
            silo = _check_silo(request.silo)
            if not principal.is_operator:
                _deny(principal, f"readmit silo {silo!r} (operator only)")
            if len(request.reason) > MAX_REASON_CHARS:
                raise RequestError(f"the reason is longer than {MAX_REASON_CHARS} characters")
            lifted = self._registry.readmit(silo, actor=principal.actor, reason=request.reason)
            _log.info("admin Readmit by %s: silo %s", principal.actor, silo)
            return convert.readmit_to_pb(lifted)

        return self._call("Readmit", context, body)

    def Value(  # noqa: N802  (the name is the .proto's)
        self, request: pb.ValueRequest, context: grpc.ServicerContext
    ) -> pb.ValueResponse:
        def body(principal: Principal) -> pb.ValueResponse:
            if not principal.is_operator:
                _deny(principal, "value the silos' contributions (operator only)")
            if (request.dataset or "digits") not in DATASETS:
                raise RequestError(
                    f"dataset {_shown(request.dataset)} is not one of {', '.join(DATASETS)}"
                )
            dataset = cast(DatasetName, request.dataset or "digits")
            root = None
            if request.HasField("dataset_root"):
                if not request.dataset_root or len(request.dataset_root) > MAX_PATH_CHARS:
                    raise RequestError(
                        f"dataset_root must be a path of 1 to {MAX_PATH_CHARS} characters"
                    )
                root = Path(request.dataset_root)
            samples = request.samples if request.HasField("samples") else DEFAULT_VALUE_SAMPLES
            if not 2 <= samples <= MAX_VALUE_SAMPLES:
                raise RequestError(
                    f"samples must be between 2 and {MAX_VALUE_SAMPLES}, got {samples}"
                )
            version = request.version if request.HasField("version") else None
            if version is not None and version < 1:
                raise RequestError(f"version must be >= 1, got {version}")
            if request.HasField("what_if"):
                silo = _check_silo(request.what_if, "what_if silo")
                if version is not None:
                    raise RequestError(
                        "a forget's preview is of the current version: leave version unset"
                    )
                # Refuse an unknown silo before the split is loaded and logits computed.
                current = self._registry.version()
                owners = {self._registry.component_record(c).silo for c in current.component_ids}
                if silo not in owners:
                    raise NotFoundError(
                        f"silo {silo!r} has no component in version {current.number}"
                    )
                split = evaluation_split(self._registry, dataset, root)
                classes = require_data(self._registry.settings.data, self._registry.root).classes
                preview = preview_forget(self._registry, split, silo, class_names=classes)
                _log.info("admin Value (what-if %s) by %s", silo, principal.actor)
                return pb.ValueResponse(preview_json=preview.model_dump_json())
            # An unknown or purged version is refused before the split is loaded.
            number = self._registry.version(version).number
            split = evaluation_split(self._registry, dataset, root)
            valuation = value_version(
                self._registry, split, version=number, samples=samples, seed=request.seed
            )
            _log.info("admin Value (version %d) by %s", number, principal.actor)
            return pb.ValueResponse(valuation_json=valuation.model_dump_json())

        return self._call("Value", context, body)

    def AuditLog(  # noqa: N802  (the name is the .proto's)
        self, request: pb.AuditLogRequest, context: grpc.ServicerContext
    ) -> pb.AuditLogResponse:
        def body(principal: Principal) -> pb.AuditLogResponse:
            if not principal.is_operator:
                _deny(principal, "read the audit log (operator only)")
            if request.after_seq < 0 or not 0 <= request.limit <= MAX_AUDIT_PAGE:
                raise RequestError(
                    f"after_seq must be >= 0 and limit between 0 and {MAX_AUDIT_PAGE}"
                )
            limit = request.limit or AUDIT_PAGE
            events = self._registry.audit_log(request.after_seq or None)
            return pb.AuditLogResponse(
                events=[convert.audit_to_pb(e) for e in events[:limit]],
                more=len(events) > limit,
            )

        return self._call("AuditLog", context, body)


def add_to_server(service: RegistryAdminService, server: Any) -> None:
    """Serve ``service`` on ``server``; a request that does not parse is INVALID_ARGUMENT."""
    pb_grpc.add_RegistryAdminServicer_to_server(service, TolerantRegistrar(server))
