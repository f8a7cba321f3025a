"""``tmc silo``: run a silo's Flower SuperNode (``tmc silo start --help``).

``tmc silo start`` checks everything it can before anything connects (the data folder is
an image folder with images, or a complete, unaltered silo export of that silo; the CA
bundle and the node's key parse; the device exists), then replaces itself with
``flower-supernode`` (TLS, the node's authentication key, ``node-config`` with ``silo-id`` /
``data-path`` / ...), so signals and the exit status are the SuperNode's own.
``--print-command`` prints that line instead. Whether the data fit the federation (its
classes, channels) is checked at hello, when the server has said what the federation is.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field, ValidationError, field_validator, model_validator

from tmc.common.components.component import SILO_PATTERN
from tmc.common.errors import ConfigError, TMCError
from tmc.common.schema import StrictModel

EXIT_USAGE = 2
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})")
SUPERNODE = "flower-supernode"

silo_app = typer.Typer(
    help="Run a silo node (a Flower SuperNode); readmit a forgotten silo.", no_args_is_help=True
)


@silo_app.callback()
def _silo() -> None:
    """Run a silo node (a Flower SuperNode) for one silo's data; readmit a forgotten silo."""


class SiloStart(StrictModel):
    """A silo node's start request, validated before anything runs."""

    superlink: str
    silo: str = Field(pattern=SILO_PATTERN)
    data: Path
    root_certificates: Path | None = None
    auth_key: Path | None = None
    device: str | None = Field(None, pattern=r"^(auto|cpu|cuda|cuda:\d+)$")
    cache_dir: Path | None = None
    insecure: bool = False
    runtime_port: int | None = Field(None, ge=1, le=65_535)
    max_wait_time: float | None = Field(None, gt=0)
    test_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    health_server_address: str | None = None

    @field_validator("superlink", "health_server_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _ADDRESS.fullmatch(value)
        if match is None or not 1 <= int(match["port"]) <= 65_535:
            raise ValueError(
                f"expected HOST:PORT (e.g. superlink.example.org:9092 or [::1]:9092, port "
                f"1 to 65535), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _transport(self) -> SiloStart:
        if self.insecure and (self.root_certificates or self.auth_key):
            raise ValueError(
                "--insecure runs without TLS, so neither --root-certificates nor --auth-key "
                "can be used with it (SuperNode authentication needs TLS)"
            )
        if not self.insecure and (self.root_certificates is None or self.auth_key is None):
            raise ValueError(
                "a silo node connects over TLS with SuperNode authentication: give "
                "--root-certificates CA and --auth-key KEY (or --insecure, for a local test)"
            )
        return self


def _toml_string(key: str, value: str) -> str:
    """One ``key="value"`` pair as Flower's ``--node-config`` parser reads it (it cannot
    carry a double quote inside a basic string, so fall back to a literal string)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{key} contains a control character: {value!r}")
    if '"' not in value and "\\" not in value:
        return f'{key}="{value}"'
    if "'" not in value:
        return f"{key}='{value}'"
    raise ConfigError(f"{key} cannot contain both ' and \" for Flower's --node-config: {value!r}")


def node_config(start: SiloStart) -> str:
    """The ``--node-config`` value: what the ClientApp reads as the node's settings."""
    pairs = [
        _toml_string("silo-id", start.silo),
        _toml_string("data-path", str(start.data.expanduser().resolve())),
    ]
    if start.device is not None:
        pairs.append(_toml_string("device", start.device))
    if start.cache_dir is not None:
        pairs.append(_toml_string("cache-dir", str(start.cache_dir.expanduser().resolve())))
    if start.test_fraction is not None:
        pairs.append(f"test-fraction={start.test_fraction!r}")
    return " ".join(pairs)


def supernode_argv(start: SiloStart, executable: str = SUPERNODE) -> list[str]:
    """The ``flower-supernode`` command line for ``start``."""
    argv = [executable, "--superlink", start.superlink]
    if start.insecure:
        argv.append("--insecure")
    elif start.root_certificates is None or start.auth_key is None:
        raise ConfigError("TLS needs --root-certificates and --auth-key")
    else:
        argv += ["--root-certificates", str(start.root_certificates.expanduser().resolve())]
        argv += ["--auth-supernode-private-key", str(start.auth_key.expanduser().resolve())]
    argv += ["--node-config", node_config(start)]
    if start.runtime_port is not None:
        argv += ["--port", str(start.runtime_port)]
    if start.max_wait_time is not None:
        argv += ["--max-wait-time", str(start.max_wait_time)]
    if start.health_server_address is not None:
        argv += ["--health-server-address", start.health_server_address]
    return argv


def _readable_file(path: Path, what: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc


def check(start: SiloStart) -> None:
    """Refuse, with the reason, a start that would fail later (or serve the wrong silo)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key
    from cryptography.x509 import load_pem_x509_certificates

    from tmc.common.data import load_silo_dir, scan_silo_folder
    from tmc.common.data.silo_dir import MANIFEST_FILE
    from tmc.common.device import resolve_device

    if (start.data.expanduser() / MANIFEST_FILE).is_file():
        data = load_silo_dir(start.data)
        if data.name != start.silo:
            raise ConfigError(
                f"{start.data} holds the data of silo {data.name!r}, not {start.silo!r}; "
                "a node serves the silo its data belongs to"
            )
    else:
        folder = scan_silo_folder(start.data, test_fraction=start.test_fraction or 0.0)
        if not folder.train.files:
            raise ConfigError(
                f"{start.data} holds no training images (expected <class>/<image>, "
                "train/<class>/<image> or increments/<name>/<class>/<image>, e.g. .png or "
                ".jpg files)"
            )
    if start.root_certificates is not None:
        pem = _readable_file(start.root_certificates, "root certificate file")
        try:
            load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise ConfigError(
                f"{start.root_certificates} is not a PEM certificate (bundle): {exc}"
            ) from exc
    if start.auth_key is not None:
        raw = _readable_file(start.auth_key, "authentication key")
        try:
            key = load_ssh_private_key(raw, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"{start.auth_key} is not an unencrypted OpenSSH private key: {exc}"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{start.auth_key} is not an ECDSA (NIST curve) key")
    if start.cache_dir is not None:
        start.cache_dir.expanduser().mkdir(parents=True, exist_ok=True)
    if start.device is not None:
        resolve_device(start.device)


def _executable() -> tuple[str, Path]:
    """``flower-supernode`` next to this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / SUPERNODE
    found = str(beside) if beside.exists() else shutil.which(SUPERNODE)
    if found is None:
        raise ConfigError(f"{SUPERNODE} is not installed here (pip install 'flwr==1.42.0')")
    return found, Path(found).parent


def node_environment(bin_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The SuperNode spawns ``flower-superexec`` and ``flwr-clientapp`` by name: put their
    folder first on PATH. Telemetry and update checks are off unless asked for."""
    env = dict(base)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    return env


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except (TMCError, ValidationError) as exc:
        message = str(exc)
        if isinstance(exc, ValidationError):
            message = "; ".join(
                (f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else "")
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            )
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc


@silo_app.command("start")
def start_command(  # noqa: PLR0917 - typer options
    superlink: Annotated[str, typer.Option(help="SuperLink address HOST:PORT (its one port)")],
    silo: Annotated[str, typer.Option(help="the silo's name (as registered for its key)")],
    data: Annotated[
        Path,
        typer.Option(
            help="the silo's images: DIR/<class>/<image> or DIR/train/<class>/ (+ DIR/test/); "
            "DIR/increments/<name>/<class>/ for data that grow (one increment per sub-folder, "
            "in name order); or a folder written by `tmc data export`"
        ),
    ],
    root_certificates: Annotated[
        Path | None, typer.Option(help="CA certificate(s) that signed the SuperLink's")
    ] = None,
    auth_key: Annotated[
        Path | None, typer.Option(help="the node's private key (OpenSSH ECDSA)")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto | cpu | cuda | cuda:N (default: run config's)")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="where θ0 is cached")] = None,
    insecure: Annotated[bool, typer.Option(help="plain text, no auth: local tests only")] = False,
    runtime_port: Annotated[
        int | None, typer.Option(help="loopback port of the node's runtime API (default 9094)")
    ] = None,
    max_wait_time: Annotated[
        float | None, typer.Option(help="give up reconnecting after this many seconds")
    ] = None,
    test_fraction: Annotated[
        float | None,
        typer.Option(help="image folder without test/: fraction held out for local testing"),
    ] = None,
    health_server_address: Annotated[
        str | None,
        typer.Option(help="HOST:PORT of the node's gRPC health service (for health checks)"),
    ] = None,
    print_command: Annotated[
        bool, typer.Option(help="print the flower-supernode line and exit")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="with --print-command: the argv as JSON")
    ] = False,
) -> None:
    """Start this silo's SuperNode: TLS to the SuperLink, authenticated by the node's key,
    serving the silo's images in DATA (class folders named like the federation's classes).
    Inputs are checked first; then the process becomes ``flower-supernode`` (stop it with
    SIGTERM / Ctrl-C). The server refuses the silo, with the reason in this node's log,
    if its classes or channels do not fit the federation or it was forgotten."""
    with _refusals():
        request = SiloStart(
            superlink=superlink,
            silo=silo,
            data=data,
            root_certificates=root_certificates,
            auth_key=auth_key,
            device=device,
            cache_dir=cache_dir,
            insecure=insecure,
            runtime_port=runtime_port,
            max_wait_time=max_wait_time,
            test_fraction=test_fraction,
            health_server_address=health_server_address,
        )
        check(request)
        executable, bin_dir = _executable()
        argv = supernode_argv(request, SUPERNODE if print_command else executable)
    if print_command:
        typer.echo(json.dumps(argv) if as_json else shlex.join(argv))
        return
    typer.echo(f"exec: {shlex.join(argv)}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, argv, node_environment(bin_dir, os.environ))


__all__ = ["SiloStart", "check", "node_config", "silo_app", "supernode_argv"]
