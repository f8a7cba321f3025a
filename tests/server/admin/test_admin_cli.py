"""``tmc admin ...`` and the ``--server`` options: same JSON as the local commands."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.registries import digits_registry
from tests.server.admin.admin_helpers import Pki, Tokens, serving, snapshot
from tmc.cli import app
from tmc.common.models import MaterializedBase
from tmc.common.receipts import check_receipt, parse_receipt
from tmc.server.admin import AdminClient, AdminServer
from tmc.server.receipts import registry_public_key
from tmc.server.registry import Registry

PROJECT = Path(__file__).resolve().parents[3]
runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any]:
    result = runner.invoke(app, list(args), env=env)
    text = result.stdout
    try:
        return result.exit_code, json.loads(text)
    except json.JSONDecodeError:
        return result.exit_code, text + result.stderr


@pytest.fixture
def remote(server: AdminServer, pki: Pki, tokens: Tokens, tmp_path: Path) -> dict[str, Path | str]:
    files: dict[str, Path | str] = {"address": f"127.0.0.1:{server.port}", "ca": pki.ca_cert}
    for name in ("operator", "silo0", "silo1"):
        path = tmp_path / f"{name}.token"
        path.write_text(getattr(tokens, name) + "\n")
        path.chmod(0o600)
        files[name] = path
    return files


def _server_args(remote: dict[str, Path | str], token: str) -> list[str]:
    return [
        "--server",
        str(remote["address"]),
        "--ca-cert",
        str(remote["ca"]),
        "--token-file",
        str(remote[token]),
    ]


def test_registry_list_and_status_over_the_api_equal_local(
    root: Path, remote: dict[str, Path | str]
) -> None:
    for command in (["registry", "list", "--status", "all"], ["registry", "status"]):
        code, local = _run(*command, "--registry", str(root), "--json")
        assert code == 0, local
        code, over_api = _run(*command, *_server_args(remote, "operator"), "--json")
        assert code == 0, over_api
        assert over_api == local


def test_forget_over_the_api(root: Path, remote: dict[str, Path | str], tmp_path: Path) -> None:
    out = tmp_path / "receipt.json"
    code, payload = _run(
        "forget",
        "--silo",
        "silo-1",
        "--reason",
        "asked",
        *_server_args(remote, "silo1"),
        "--receipt-out",
        str(out),
        "--json",
    )
    assert code == 0, payload
    assert set(payload) == {"removed", "version", "components", "delta_sha256", "receipt"}
    # The silo keeps the server's signed receipt; it checks offline against the server's key.
    receipt = parse_receipt(out.read_text())
    check_receipt(receipt, public_key=registry_public_key(root))
    assert receipt.removed == sorted(payload["removed"])
    with Registry.open(root, actor="test") as local:
        current = local.current_version()
        assert current is not None
        assert payload["version"] == current.number
        assert payload["delta_sha256"] == current.delta_sha256
        assert local.list_components(silo="silo-1") == []
        actors = {e.actor for e in local.audit_log() if e.action == "forget"}
    assert actors == {"silo:silo-1/silo-1-key"}
    code, listed = _run("registry", "list", *_server_args(remote, "silo1"), "--json")
    assert (code, listed) == (0, [])


def test_forget_of_another_silo_is_refused_with_status_2(
    root: Path, remote: dict[str, Path | str]
) -> None:
    before = snapshot(root)
    code, payload = _run("forget", "--silo", "silo-1", *_server_args(remote, "silo0"), "--json")
    assert code == 2
    assert payload["error"] == "PermissionDeniedError"
    assert "may not" in payload["message"]
    assert snapshot(root) == before


def test_export_over_the_api(root: Path, tmp_path: Path, remote: dict[str, Path | str]) -> None:
    out = tmp_path / "model.safetensors"
    server = _server_args(remote, "operator")
    code, payload = _run("export", "--out", str(out), "--delta-only", *server, "--json")
    assert code == 0, payload
    with Registry.open(root, actor="test") as local:
        assert out.read_bytes() == local.export_bytes()
    assert payload["bytes"] == out.stat().st_size
    # This registry predates stored θ0 and data specs: the full model cannot be built.
    code, payload = _run("export", "--out", str(out), *server, "--json")
    assert code == 2
    assert "created before registries stored" in payload["message"]


def test_full_model_export_over_the_api(
    tmp_path: Path, digits_base: MaterializedBase, tokens: Tokens, pki: Pki
) -> None:
    """The self-contained model streamed by the API equals the local export, byte for byte,
    for the current and for a past version."""
    root = digits_registry(tmp_path / "digits-registry", digits_base, rounds=2)
    with serving(root, tokens, pki) as handle:
        token = tmp_path / "operator.token"
        token.write_text(tokens.operator + "\n")
        server = ["--server", f"127.0.0.1:{handle.port}", "--ca-cert", str(pki.ca_cert)]
        server += ["--token-file", str(token)]
        for version in (None, 1):
            out = tmp_path / f"model-{version}.safetensors"
            extra = [] if version is None else ["--version", str(version)]
            code, payload = _run("export", "--out", str(out), *extra, *server, "--json")
            assert code == 0, payload
            with Registry.open(root, actor="test") as local:
                assert out.read_bytes() == local.export_model_bytes(version)
        code, payload = _run("export", "--out", str(out), "--version", "9", *server, "--json")
        assert code == 2
        assert payload["error"] == "NotFoundError"


def test_token_from_the_environment(
    remote: dict[str, Path | str], tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["registry", "list", "--server", str(remote["address"]), "--ca-cert", str(remote["ca"])]
    code, payload = _run(*args, "--json", env={"TMC_ADMIN_TOKEN": tokens.silo0})
    assert code == 0, payload
    assert {row["silo"] for row in payload} == {"silo-0"}
    monkeypatch.delenv("TMC_ADMIN_TOKEN", raising=False)
    code, payload = _run(*args, "--json")
    assert code == 2
    assert "no admin token" in payload["message"]


def test_registry_and_server_are_exclusive(root: Path, remote: dict[str, Path | str]) -> None:
    code, payload = _run(
        "registry", "list", "--registry", str(root), *_server_args(remote, "operator"), "--json"
    )
    assert code == 2
    assert "exactly one of --registry" in payload["message"]
    code, payload = _run("registry", "list", "--json")
    assert code == 2
    assert "exactly one of --registry" in payload["message"]
    code, payload = _run("registry", "list", "--registry", str(root), "--insecure", "--json")
    assert code == 2
    assert "only apply with --server" in payload["message"]


def test_token_commands(tmp_path: Path) -> None:
    credentials = tmp_path / "creds" / "admin.json"
    base = ["admin", "token"]
    code, created = _run(
        *base, "create", "--credentials", str(credentials), "--silo", "s-1", "--json"
    )
    assert code == 0, created
    assert created["role"] == "silo:s-1"
    assert created["label"] == "s-1-1"
    assert created["token"].startswith("tmc_")
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert created["token"] not in credentials.read_text()
    out = tmp_path / "op.token"
    code, made = _run(
        *base,
        "create",
        "--credentials",
        str(credentials),
        "--operator",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0
    assert made["token"] is None
    assert out.stat().st_mode & 0o777 == 0o600
    code, listed = _run(*base, "list", "--credentials", str(credentials), "--json")
    assert [(t["label"], t["role"]) for t in listed] == [
        ("s-1-1", "silo:s-1"),
        ("operator-1", "operator"),
    ]
    code, _ = _run(*base, "create", "--credentials", str(credentials), "--operator", "--silo", "x")
    assert code == 2
    code, revoked = _run(
        *base, "revoke", "--credentials", str(credentials), "--label", "s-1-1", "--json"
    )
    assert code == 0
    assert revoked == {"revoked": "s-1-1", "role": "silo:s-1"}


def test_serve_refuses_plain_text_without_insecure(root: Path, tokens: Tokens) -> None:
    code, text = _run("admin", "serve", "--registry", str(root), "--credentials", str(tokens.path))
    assert code == 2
    assert "--insecure" in text


@pytest.mark.slow
def test_serve_command_runs_until_sigterm(root: Path, tokens: Tokens, pki: Pki) -> None:
    command = [
        sys.executable, "-c", "from tmc.cli import main; main()", "-v",
        "admin", "serve", "--registry", str(root), "--credentials", str(tokens.path),
        "--port", "0", "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(
        command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        deadline, port, seen = time.monotonic() + 60, None, []
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            seen.append(line)
            found = re.search(r"serving .* on 127\.0\.0\.1:(\d+) \(TLS\)", line)
            port = int(found.group(1)) if found else None
            assert line or process.poll() is None, "".join(seen)
        assert port is not None, "".join(seen)
        with AdminClient(f"127.0.0.1:{port}", token=tokens.operator, ca_cert=pki.ca_cert) as c:
            assert c.forget(silo="silo-5").removed
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    logs = "".join(seen) + rest
    assert "admin API stopped" in logs
    assert "Forget by operator/ops" in logs  # -v logs the call...
    assert tokens.operator not in logs  # ...never the token


def test_forget_then_readmit_over_the_api(root: Path, remote: dict[str, Path | str]) -> None:
    """A silo token may forget its own silo, which tombstones it; only the operator may
    readmit it; readmitting a silo that is not forgotten is NOT_FOUND (exit 2)."""
    code, forgot = _run(
        "forget", "--silo", "silo-0", "--reason", "mine", "--json", *_server_args(remote, "silo0")
    )
    assert code == 0, forgot
    code, status = _run("registry", "status", "--json", *_server_args(remote, "operator"))
    assert code == 0, status
    assert status["tombstoned"] == 1
    silo0 = next(s for s in status["silo_summaries"] if s["silo"] == "silo-0")
    assert silo0["forgotten_reason"] == "mine"

    before = snapshot(root)
    code, refused = _run("silo", "readmit", "silo-0", "--json", *_server_args(remote, "silo0"))
    assert code == 2, refused
    assert refused["error"] == "PermissionDeniedError", refused
    assert snapshot(root) == before, "a refused readmission changes nothing"

    code, answer = _run(
        "silo", "readmit", "silo-0", "--reason", "back", "--json", *_server_args(remote, "operator")
    )
    assert code == 0, answer
    assert answer["silo"] == "silo-0"
    assert answer["readmitted_at"] is not None
    with Registry.open(root) as registry:
        assert registry.tombstone("silo-0") is None
        event = registry.audit_log()[-1]
        assert (event.action, event.silo, event.details["reason"]) == ("readmit", "silo-0", "back")
        assert event.actor.startswith("operator/")
    code, again = _run("silo", "readmit", "silo-0", "--json", *_server_args(remote, "operator"))
    assert code == 2, again
    assert again["error"] == "NotFoundError", again


def test_readmit_locally(root: Path) -> None:
    with Registry.open(root) as registry:
        registry.forget(silo="silo-1", actor="operator", reason="asked")
    code, answer = _run("silo", "readmit", "silo-1", "--registry", str(root), "--json")
    assert code == 0, answer
    code, text = _run("silo", "readmit", "silo-1", "--registry", str(root))
    assert code == 2
    assert text.strip() == "error: silo 'silo-1' is not forgotten, so there is nothing to readmit"
