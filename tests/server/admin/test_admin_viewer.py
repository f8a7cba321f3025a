"""A ``viewer`` token (the dashboard's look-only role) is refused every admin API call, and
``tmc admin token create --viewer`` makes one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.server.admin.admin_helpers import ClientFactory, Tokens, snapshot
from tmc.cli import app
from tmc.server.admin import PermissionDeniedError, create_token


def test_a_viewer_token_is_refused_every_call(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    viewer, _ = create_token(tokens.path, role="viewer", label="watch")
    client = connect(viewer)
    before = snapshot(root)
    calls = {
        "list": client.list_components,
        "list one silo": lambda: client.list_components(silo="silo-1"),
        "forget": lambda: client.forget(silo="silo-1"),
        "readmit": lambda: client.readmit("silo-1"),
        "status": client.status,
        "export": client.export_bytes,
        "audit": client.audit_log,
        "value": client.value,
    }
    for name, call in calls.items():
        with pytest.raises(PermissionDeniedError, match="'watch' \\(viewer\\) may not"):
            call()
        assert snapshot(root) == before, name


def test_token_create_viewer(tmp_path: Path) -> None:
    credentials = tmp_path / "admin.json"
    args = ["admin", "token", "create", "--credentials", str(credentials)]
    result = CliRunner().invoke(app, [*args, "--viewer", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["role"] == "viewer"
    both = CliRunner().invoke(app, [*args, "--viewer", "--operator"])
    assert both.exit_code == 2
    assert "exactly one of --operator, --viewer or --silo NAME" in both.stderr
