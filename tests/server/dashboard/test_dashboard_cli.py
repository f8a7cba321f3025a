"""``tmc dashboard`` refuses what it cannot serve safely, with one line and status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tmc.cli import app
from tmc.server.admin import create_token

runner = CliRunner()


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "admin-credentials.json"
    create_token(path, role="operator", label="ops")
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--host", "0.0.0.0"], "is not a loopback address"),
        (["--host", "192.0.2.7"], "needs HTTPS"),
        (["--tls-cert", "cert.pem"], "give both --tls-cert and --tls-key"),
    ],
)
def test_refusals_are_one_line_and_status_2(
    tmp_path: Path, credentials: Path, extra: list[str], message: str
) -> None:
    args = ["dashboard", "--registry", str(tmp_path / "none"), "--token-file", str(credentials)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    as_json = runner.invoke(app, [*args, *extra, "--json"])
    assert as_json.exit_code == 2
    assert message in json.loads(as_json.stdout)["message"]


def test_an_unreadable_credentials_file_or_a_missing_registry_is_refused(
    tmp_path: Path, credentials: Path
) -> None:
    credentials.chmod(0o644)
    args = ["dashboard", "--registry", str(tmp_path / "none"), "--token-file", str(credentials)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "chmod 600" in result.stderr
    credentials.chmod(0o600)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "no registry at" in result.stderr


def test_help_explains_the_access_model() -> None:
    result = runner.invoke(app, ["dashboard", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "operator or viewer token" in text
    assert "only an operator may forget or readmit" in text
