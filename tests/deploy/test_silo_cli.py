"""``tmc silo start``: inputs checked before anything starts, the right flower-supernode line."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from flwr.common.config import parse_config_args
from typer.testing import CliRunner

from tests.images import write_images
from tmc.cli import app
from tmc.client.cli import SiloStart, check, node_config, supernode_argv
from tmc.common.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory, credentials_module: ModuleType) -> Path:
    out = tmp_path_factory.mktemp("creds")
    credentials_module.generate(
        credentials_module.Request(
            out=out, silos=("silo-0",), hosts=("localhost",), superlink="x:1", admin_tokens=False
        )
    )
    return out / "silos" / "silo-0"


def _start(silo_dir: Path, keys: Path, **changes: object) -> SiloStart:
    values: dict[str, object] = {
        "superlink": "superlink:8000",
        "silo": "silo-0",
        "data": silo_dir,
        "root_certificates": keys / "ca.crt",
        "auth_key": keys / "node.key",
    }
    return SiloStart.model_validate({**values, **changes})


def test_the_supernode_line(silo_dir: Path, keys: Path, tmp_path: Path) -> None:
    start = _start(silo_dir, keys, cache_dir=tmp_path / "cache", device="cpu", runtime_port=9100)
    check(start)
    argv = supernode_argv(start)
    assert argv[:3] == ["flower-supernode", "--superlink", "superlink:8000"]
    assert "--insecure" not in argv
    assert argv[argv.index("--root-certificates") + 1] == str(keys / "ca.crt")
    assert argv[argv.index("--auth-supernode-private-key") + 1] == str(keys / "node.key")
    assert argv[argv.index("--port") + 1] == "9100"
    config = parse_config_args([argv[argv.index("--node-config") + 1]])
    assert config == {
        "silo-id": "silo-0",
        "data-path": str(silo_dir.resolve()),
        "device": "cpu",
        "cache-dir": str((tmp_path / "cache").resolve()),
    }


@pytest.mark.parametrize("path", ["/data/with space", '/data/a"quote', "/data/back\\slash"])
def test_node_config_survives_flowers_parser(path: str) -> None:
    start = SiloStart(superlink="h:1", silo="a", data=Path(path), insecure=True)
    assert parse_config_args([node_config(start)])["data-path"] == path


def test_insecure_is_explicit_and_excludes_keys(silo_dir: Path, keys: Path) -> None:
    with pytest.raises(ValueError, match="--root-certificates CA and --auth-key KEY"):
        SiloStart(superlink="h:1", silo="silo-0", data=silo_dir)
    with pytest.raises(ValueError, match="--insecure runs without TLS"):
        _start(silo_dir, keys, insecure=True)
    argv = supernode_argv(SiloStart(superlink="h:1", silo="silo-0", data=silo_dir, insecure=True))
    assert "--insecure" in argv
    assert "--auth-supernode-private-key" not in argv


def test_inputs_are_checked(silo_dir: Path, keys: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds the data of silo 'silo-0', not 'silo-1'"):
        check(_start(silo_dir, keys, silo="silo-1"))
    with pytest.raises(DataError, match="does not exist"):
        check(_start(silo_dir, keys, data=tmp_path / "missing"))
    with pytest.raises(ConfigError, match="not an unencrypted OpenSSH private key"):
        check(_start(silo_dir, keys, auth_key=keys / "node.pub"))
    with pytest.raises(ConfigError, match="cannot be read"):
        check(_start(silo_dir, keys, auth_key=tmp_path / "nope.key"))
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        check(_start(silo_dir, keys, root_certificates=keys / "node.pub"))


def test_cli_prints_the_command_or_refuses_in_one_line(silo_dir: Path, keys: Path) -> None:
    common = ["--superlink", "superlink:8000", "--data", str(silo_dir)]
    tls = ["--root-certificates", str(keys / "ca.crt"), "--auth-key", str(keys / "node.key")]
    runner = CliRunner()
    done = runner.invoke(
        app, ["silo", "start", *common, "--silo", "silo-0", *tls, "--print-command", "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)[0] == "flower-supernode"
    refused = runner.invoke(app, ["silo", "start", *common, "--silo", "silo-9", *tls])
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: ")
    assert "'silo-9'" in refused.stderr


def test_an_image_folder_silo_and_its_options(keys: Path, tmp_path: Path) -> None:
    """A plain image folder is accepted (the node config then names the silo); one without
    images is refused before anything starts; the held-out fraction and the health service
    reach flower-supernode."""
    write_images(tmp_path / "own", {"cat": 2, "dog": 2})
    start = _start(
        tmp_path / "own",
        keys,
        silo="hospital-a",
        test_fraction=0.25,
        health_server_address="127.0.0.1:8083",
    )
    check(start)
    argv = supernode_argv(start)
    assert argv[argv.index("--health-server-address") + 1] == "127.0.0.1:8083"
    config = parse_config_args([argv[argv.index("--node-config") + 1]])
    assert config["silo-id"] == "hospital-a"
    assert config["test-fraction"] == 0.25
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no training images"):
        check(_start(tmp_path / "empty", keys))


@pytest.mark.parametrize("address", ["nohost", "host:", "host:99999", "a b:1", "host:9092\n"])
def test_a_bad_superlink_address_says_host_port(address: str, silo_dir: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "silo",
            "start",
            "--superlink",
            address,
            "--silo",
            "silo-0",
            "--data",
            str(silo_dir),
            "--insecure",
            "--print-command",
        ],
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: --superlink: expected HOST:PORT")
    assert "^(" not in lines[0]  # no regular expression shown to the user
