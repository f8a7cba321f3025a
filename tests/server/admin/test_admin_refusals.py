"""Requests that are unauthenticated, malformed, oversized or unencrypted get a clear gRPC
status, and change nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from tests.server.admin.admin_helpers import ClientFactory, Pki, Tokens, snapshot
from tmc.common.errors import ConfigError, NotFoundError
from tmc.server.admin import (
    AdminClient,
    AdminServer,
    CredentialsError,
    PermissionDeniedError,
    RequestError,
    TLSFiles,
    UnauthenticatedError,
    UnavailableError,
    create_token,
    serve,
)
from tmc.server.admin.proto import pb, pb_grpc

Code = grpc.StatusCode


@pytest.fixture
def stub(server: AdminServer, pki: Pki) -> Iterator[Any]:
    """A bare generated stub over TLS: requests exactly as sent, status codes as returned."""
    credentials = grpc.ssl_channel_credentials(pki.ca_cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
        yield pb_grpc.RegistryAdminStub(channel)


def _code(call: Any, request: Any, token: str | None, *, header: str | None = None) -> Any:
    metadata = [("authorization", header or f"Bearer {token}")] if token or header else []
    with pytest.raises(grpc.RpcError) as raised:
        _invoke(call, request, metadata)
    return raised.value


def _invoke(call: Any, request: Any, metadata: list[tuple[str, str]]) -> None:
    response = call(request, metadata=metadata, timeout=20)
    if not isinstance(response, Message):  # a server stream fails when read
        for _ in response:
            pass


@pytest.mark.parametrize(
    ("token", "header", "expected"),
    [
        (None, None, "no credential"),
        ("tmc_wrong-token", None, "not recognised"),
        (None, "Basic dXNlcjpwYXNz", "Bearer"),
        (None, "Bearer " + "x" * 600, "malformed"),
    ],
    ids=["missing", "unknown", "not-bearer", "too-long"],
)
def test_unauthenticated_requests_change_nothing(
    root: Path, stub: Any, token: str | None, header: str | None, expected: str
) -> None:
    before = snapshot(root)
    for method, request in [
        (stub.Forget, pb.ForgetRequest(silo="silo-1")),
        (stub.ListComponents, pb.ListComponentsRequest()),
        (stub.Status, pb.StatusRequest()),
        (stub.Export, pb.ExportRequest()),
        (stub.AuditLog, pb.AuditLogRequest()),
    ]:
        error = _code(method, request, token, header=header)
        assert error.code() == Code.UNAUTHENTICATED
        assert expected in error.details()
    assert snapshot(root) == before


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (pb.ForgetRequest(), "exactly one of silo or component_id (got neither)"),
        (
            pb.ForgetRequest(silo="silo-1", component_id="a" * 64),
            "exactly one of silo or component_id (got both)",
        ),
        (pb.ForgetRequest(silo="../etc"), "not a valid silo name"),
        (pb.ForgetRequest(silo=""), "not a valid silo name"),
        (pb.ForgetRequest(component_id="not-a-hash"), "not 64 lowercase hex digits"),
        (pb.ForgetRequest(silo="silo-1", reason="r" * 1001), "longer than 1000"),
    ],
    ids=["neither", "both", "bad-silo", "empty-silo", "bad-id", "long-reason"],
)
def test_malformed_forget_is_invalid_argument(
    root: Path, stub: Any, tokens: Tokens, request_: Any, expected: str
) -> None:
    before = snapshot(root)
    error = _code(stub.Forget, request_, tokens.operator)
    assert error.code() == Code.INVALID_ARGUMENT
    assert expected in error.details()
    assert snapshot(root) == before


def test_other_malformed_requests(root: Path, stub: Any, tokens: Tokens) -> None:
    before = snapshot(root)
    for method, request, expected in [
        (stub.ListComponents, pb.ListComponentsRequest(status="deleted"), "not one of"),
        (stub.ListComponents, pb.ListComponentsRequest(silo="a b"), "not a valid silo"),
        (stub.Export, pb.ExportRequest(exclude_silos=["ok", "-bad"]), "not a valid silo"),
        (stub.AuditLog, pb.AuditLogRequest(limit=10**6), "limit between"),
        (stub.AuditLog, pb.AuditLogRequest(after_seq=-1), "after_seq"),
    ]:
        error = _code(method, request, tokens.operator)
        assert error.code() == Code.INVALID_ARGUMENT, error.details()
        assert expected in error.details()
    assert snapshot(root) == before


def test_unknown_silo_or_component_is_not_found(
    root: Path, stub: Any, tokens: Tokens, connect: ClientFactory
) -> None:
    before = snapshot(root)
    for request in (pb.ForgetRequest(silo="silo-99"), pb.ForgetRequest(component_id="f" * 64)):
        error = _code(stub.Forget, request, tokens.operator)
        assert error.code() == Code.NOT_FOUND
    assert _code(stub.Export, pb.ExportRequest(exclude_silos=["nope"]), tokens.operator).code() == (
        Code.NOT_FOUND
    )
    # A silo token asking for its own (empty) silo's unknown component: NOT_FOUND too.
    with pytest.raises(NotFoundError, match="no component"):
        connect(tokens.silo0).forget(component_id="e" * 64)
    assert snapshot(root) == before


def test_oversized_request_is_resource_exhausted(
    root: Path, stub: Any, tokens: Tokens, connect: ClientFactory
) -> None:
    before = snapshot(root)
    huge = pb.ForgetRequest(silo="silo-1", reason="x" * 100_000)
    assert _code(stub.Forget, huge, tokens.operator).code() == Code.RESOURCE_EXHAUSTED
    with pytest.raises(RequestError, match="too large"):
        connect(tokens.operator).forget(silo="silo-1", reason="x" * 100_000)
    assert snapshot(root) == before


def test_client_refuses_both_targets_before_sending(tokens: Tokens, connect: ClientFactory) -> None:
    client = connect(tokens.operator)
    with pytest.raises(RequestError, match="exactly one"):
        client.forget(silo="silo-1", component_id="a" * 64)
    with pytest.raises(RequestError, match="exactly one"):
        client.forget()


def test_plaintext_client_against_tls_server_fails(
    root: Path, server: AdminServer, tokens: Tokens
) -> None:
    before = snapshot(root)
    with (
        AdminClient(
            f"127.0.0.1:{server.port}", token=tokens.operator, insecure=True, timeout_s=3
        ) as client,
        pytest.raises(UnavailableError, match="did not answer"),
    ):
        client.forget(silo="silo-1")
    assert snapshot(root) == before


def test_client_distrusting_the_server_certificate_fails(
    server: AdminServer, tokens: Tokens, other_pki: Pki
) -> None:
    address = f"127.0.0.1:{server.port}"
    with (
        AdminClient(address, token=tokens.operator, ca_cert=other_pki.ca_cert, timeout_s=3) as c,
        pytest.raises(UnavailableError),
    ):
        c.list_components()


def test_plain_text_needs_an_explicit_insecure(root: Path, tokens: Tokens, pki: Pki) -> None:
    with pytest.raises(ConfigError, match="needs TLS"):
        serve(root, credentials_path=tokens.path)
    with pytest.raises(ConfigError, match="not both"):
        serve(
            root,
            credentials_path=tokens.path,
            tls=TLSFiles(pki.server_cert, pki.server_key),
            insecure=True,
        )
    with pytest.raises(ConfigError, match="TLS options"):
        AdminClient("127.0.0.1:1", token="t", insecure=True, ca_cert=pki.ca_cert)
    handle = serve(root, credentials_path=tokens.path, insecure=True)
    try:
        with AdminClient(f"127.0.0.1:{handle.port}", token=tokens.operator, insecure=True) as c:
            assert c.status().active > 0
    finally:
        handle.stop(grace=1.0)


def test_credentials_file_is_private_and_required_private(
    root: Path, tmp_path: Path, tokens: Tokens, pki: Pki
) -> None:
    assert tokens.path.stat().st_mode & 0o777 == 0o600
    text = tokens.path.read_text()
    for token in (tokens.operator, tokens.silo0, tokens.silo1):
        assert token not in text  # only hashes are stored
    tokens.path.chmod(0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        serve(root, credentials_path=tokens.path, tls=TLSFiles(pki.server_cert, pki.server_key))
    with pytest.raises(CredentialsError, match="no credentials file"):
        serve(root, credentials_path=tmp_path / "missing.json", insecure=True)


def test_a_broken_credentials_file_fails_closed(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    client = connect(tokens.operator)
    assert client.list_components()
    tokens.path.write_text("{not json")
    with pytest.raises(UnavailableError, match="credentials file"):
        client.forget(silo="silo-1")
    tokens.path.unlink()
    create_token(tokens.path, role="operator", label="ops2")
    with pytest.raises(UnauthenticatedError):  # the old operator token is gone
        client.list_components()


def test_tokens_never_appear_in_logs(
    root: Path, tokens: Tokens, connect: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "tmc_this-is-a-wrong-token-0123456789"
    connect(tokens.operator).list_components()
    connect(tokens.silo0).forget(silo="silo-0")
    with pytest.raises(UnauthenticatedError):
        connect(wrong).forget(silo="silo-0")
    with pytest.raises(PermissionDeniedError):
        connect(tokens.silo1).forget(silo="silo-2")
    assert "refused" in caplog.text  # the refusals were logged...
    for token in (tokens.operator, tokens.silo0, tokens.silo1, wrong):
        assert token not in caplog.text  # ...without any token
        assert token[4:20] not in caplog.text


def test_a_silo_name_with_a_trailing_newline_is_invalid_not_unknown(
    root: Path, stub: Any, tokens: Tokens
) -> None:
    before = snapshot(root)
    for method, request, expected in [
        (stub.ListComponents, pb.ListComponentsRequest(silo="silo-1\n"), "not a valid silo"),
        (stub.Forget, pb.ForgetRequest(silo="silo-1\n"), "not a valid silo"),
        (stub.Forget, pb.ForgetRequest(component_id="f" * 64 + "\n"), "64 lowercase hex"),
    ]:
        error = _code(method, request, tokens.operator)
        assert error.code() == Code.INVALID_ARGUMENT, error.details()
        assert expected in error.details()
    assert snapshot(root) == before


def test_an_undecodable_request_is_invalid_argument(
    root: Path, server: AdminServer, pki: Pki, tokens: Tokens
) -> None:
    before = snapshot(root)
    credentials = grpc.ssl_channel_credentials(pki.ca_cert.read_bytes())
    metadata = [("authorization", f"Bearer {tokens.operator}")]
    with grpc.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
        for method in ("Forget", "Export"):
            path = f"/tmc.admin.v1.RegistryAdmin/{method}"
            call = channel.unary_stream(path) if method == "Export" else channel.unary_unary(path)
            with pytest.raises(grpc.RpcError) as raised:
                _invoke(call, b"\xff\xff\xff\xff", metadata)
            assert raised.value.code() == Code.INVALID_ARGUMENT, raised.value.details()
            assert f"not a valid {method} message" in raised.value.details()
    assert snapshot(root) == before


def test_credentials_made_world_readable_while_serving_are_refused(
    tokens: Tokens, connect: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(tokens.operator)
    assert client.list_components()
    tokens.path.chmod(0o644)  # content and mtime unchanged: only the mode says so
    with (
        caplog.at_level(logging.ERROR, logger="tmc.server.admin"),
        pytest.raises(UnavailableError, match="cannot read its credentials file"),
    ):
        client.list_components()
    assert any("chmod 600" in record.getMessage() for record in caplog.records)
    tokens.path.chmod(0o600)
    assert client.list_components()
