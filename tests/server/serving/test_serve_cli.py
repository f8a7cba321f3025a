"""``tmc serve`` refuses what it cannot serve with one line and exit status 2, before it
listens: no registry, no credentials, a registry without a data spec, half a TLS pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.registries import digits_registry
from tmc.cli import app
from tmc.common.models import MaterializedBase

runner = CliRunner()


def _refusal(*args: str) -> str:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def test_missing_credentials_and_registry_are_refused(
    registry: Path, credentials: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = credentials
    missing = str(tmp_path / "missing")
    assert "no credentials file" in _refusal("--registry", str(registry), "--credentials", missing)
    assert "no registry" in _refusal("--registry", missing, "--credentials", str(path))


def test_a_registry_without_a_data_spec_is_refused(
    tmp_path: Path, credentials: tuple[Path, str], digits_base: MaterializedBase
) -> None:
    old = digits_registry(tmp_path / "old", digits_base, data=False)
    line = _refusal("--registry", str(old), "--credentials", str(credentials[0]))
    assert "no data spec" in line


@pytest.mark.parametrize("flag", ["--tls-cert", "--tls-key"])
def test_half_a_tls_pair_is_refused(
    registry: Path, credentials: tuple[Path, str], tmp_path: Path, flag: str
) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    args = ["--registry", str(registry), "--credentials", str(credentials[0]), flag, str(pem)]
    assert "both --tls-cert and --tls-key" in _refusal(*args)
    result = runner.invoke(app, ["serve", *args, "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "ConfigError"
