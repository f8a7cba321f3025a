"""``tmc admin ...``: serve the admin API and manage its tokens; and the ``--server``
options that let ``tmc forget``, ``tmc export`` and ``tmc registry list|status`` use a
running admin API instead of a local registry folder."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from tmc.common.errors import ConfigError
from tmc.common.files import atomic_write_bytes
from tmc.server.cli.options import JsonOption
from tmc.server.cli.output import console, emit_json, err_console, handle_errors, table
from tmc.server.registry import Registry

if TYPE_CHECKING:
    from tmc.server.admin import AdminClient

_log = logging.getLogger(__name__)

TOKEN_ENV = "TMC_ADMIN_TOKEN"
DEFAULT_PORT = 9440

admin_app = typer.Typer(
    help="The admin API (gRPC over TLS): serve a registry to the operator and the silos, "
    "and manage the tokens that may call it.",
    no_args_is_help=True,
)
token_app = typer.Typer(help="Admin API tokens: create, list, revoke.", no_args_is_help=True)
admin_app.add_typer(token_app, name="token")

CredentialsOption = Annotated[
    Path, typer.Option("--credentials", help="credentials file (JSON, 0600; token hashes only)")
]

# -- the --server options of the registry commands -------------------------------------------

OptionalRegistryOption = Annotated[
    Path | None, typer.Option("--registry", help="registry folder (or --server)")
]
ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="HOST:PORT of an admin API, used instead of --registry"),
]
CaCertOption = Annotated[
    Path | None,
    typer.Option("--ca-cert", help="with --server: CA (PEM) to trust (default: system roots)"),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option("--token-file", help=f"with --server: file holding the token (or ${TOKEN_ENV})"),
]
InsecureOption = Annotated[
    bool, typer.Option("--insecure", help="with --server: plain text, no TLS (tests only)")
]


@dataclass(frozen=True)
class Remote:
    """The ``--server`` options of one command."""

    server: str | None = None
    ca_cert: Path | None = None
    token_file: Path | None = None
    insecure: bool = False

    def client(self) -> AdminClient:
        from tmc.server.admin import AdminClient, read_token

        if self.server is None:
            raise ConfigError("--server is missing")
        token = read_token(self.token_file, os.environ.get(TOKEN_ENV))
        return AdminClient(self.server, token=token, ca_cert=self.ca_cert, insecure=self.insecure)


@contextmanager
def open_target(registry: Path | None, remote: Remote) -> Iterator[Registry | AdminClient]:
    """The local registry (``--registry``) or a client of the admin API (``--server``):
    both answer ``list_components``, ``status``, ``silos``, ``forget`` and ``export``."""
    if (registry is None) == (remote.server is None):
        raise ConfigError(
            "give exactly one of --registry DIR (a local registry) or --server HOST:PORT "
            "(an admin API)"
        )
    if remote.server is None and (remote.ca_cert or remote.token_file or remote.insecure):
        raise ConfigError("--ca-cert, --token-file and --insecure only apply with --server")
    if registry is not None:
        with Registry.open(registry, actor="cli") as opened:
            yield opened
    else:
        with remote.client() as client:
            yield client


# -- tmc admin serve ---------------------------------------------------------------------------


@admin_app.command("serve")
def serve_command(
    registry: Annotated[Path, typer.Option("--registry", help="registry folder to serve")],
    credentials: CredentialsOption,
    port: Annotated[int, typer.Option(help="TCP port (0: any free port)")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="server certificate chain (PEM)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="server key (PEM)")] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="serve plain text, without TLS (tests only)")
    ] = False,
    max_workers: Annotated[int, typer.Option(min=1, help="calls served at once")] = 16,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="serve Prometheus /metrics over HTTP on this port (0: any free one)",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="address /metrics listens on")
    ] = "127.0.0.1",
) -> None:
    """Serve the admin API until SIGINT or SIGTERM. Needs TLS (--tls-cert, --tls-key)
    unless --insecure is given, and a credentials file (`tmc admin token create`). The
    gRPC health service (grpc.health.v1) answers on the same port without a token;
    --metrics-port adds Prometheus /metrics, read from the registry at each scrape."""
    from tmc.server.admin import TLSFiles, serve

    with handle_errors(as_json=False):
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("give both --tls-cert and --tls-key")
        tls = TLSFiles(tls_cert, tls_key) if tls_cert and tls_key else None
        if tls is None and not insecure:
            raise ConfigError(
                "the admin API serves TLS: give --tls-cert and --tls-key (plain text only with "
                "an explicit --insecure); nothing was started"
            )
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server = serve(
                registry,
                credentials_path=credentials,
                host=host,
                port=port,
                tls=tls,
                insecure=insecure,
                max_workers=max_workers,
                metrics_port=metrics_port,
                metrics_host=metrics_host,
            )
            mode = "TLS" if tls else "PLAIN TEXT (--insecure)"
            scrape = (
                f"; metrics on http://{metrics_host}:{server.metrics.port}/metrics"
                if server.metrics is not None
                else ""
            )
            err_console.print(
                f"admin API serving {registry} on {server.address} ({mode}); "
                f"credentials {credentials}{scrape}; stop with Ctrl-C or SIGTERM",
                highlight=False,
                soft_wrap=True,
            )
            try:
                while not stop.wait(0.5):
                    pass
            finally:
                server.stop(grace=5.0)
                err_console.print("admin API stopped", highlight=False, soft_wrap=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# -- tmc admin token ... -----------------------------------------------------------------------


@token_app.command("create")
def token_create(
    credentials: CredentialsOption,
    operator: Annotated[bool, typer.Option("--operator", help="may do everything")] = False,
    silo: Annotated[
        str | None, typer.Option("--silo", help="may list and forget this silo's components")
    ] = None,
    viewer: Annotated[
        bool, typer.Option("--viewer", help="may only look at the dashboard (tmc dashboard)")
    ] = False,
    label: Annotated[
        str | None, typer.Option(help="names the token in the audit log (default: role-N)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the token to this file (0600), not stdout")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token: it is shown once (or written to --out) and only its hash is kept."""
    from tmc.server.admin.auth import create_token, role_for

    with handle_errors(as_json=as_json):
        role = role_for(operator=operator, silo=silo, viewer=viewer)
        token, entry = create_token(credentials, role=role, label=label)
        if out is not None:
            atomic_write_bytes(out, (token + "\n").encode(), mode=0o600)
        shown = None if out is not None else token
        if as_json:
            emit_json(
                {
                    "label": entry.label,
                    "role": entry.role,
                    "token": shown,
                    "token_file": str(out) if out else None,
                    "credentials": str(credentials),
                }
            )
            return
        where = f"written to {out}" if out else "below; it is not shown again"
        err_console.print(
            f"token {entry.label!r} ({entry.role}) added to {credentials}; the token is {where}",
            highlight=False,
            soft_wrap=True,
        )
        if shown is not None:
            console.print(shown, highlight=False, soft_wrap=True)


@token_app.command("list")
def token_list(credentials: CredentialsOption, as_json: JsonOption = False) -> None:
    """Tokens by label and role (the tokens themselves are not stored)."""
    from tmc.server.admin.auth import read_credentials

    with handle_errors(as_json=as_json):
        entries = read_credentials(credentials).tokens
        rows = [
            {"label": e.label, "role": e.role, "created_at": e.created_at.isoformat()}
            for e in entries
        ]
        if as_json:
            emit_json(rows)
            return
        console.print(
            table(
                f"{len(rows)} token(s) in {credentials}",
                ["label", "role", "created"],
                [[r["label"], r["role"], r["created_at"]] for r in rows],
            )
        )


@token_app.command("revoke")
def token_revoke(
    credentials: CredentialsOption,
    label: Annotated[str, typer.Option(help="the token to revoke")],
    as_json: JsonOption = False,
) -> None:
    """Remove a token; a running server refuses it from its next call."""
    from tmc.server.admin.auth import revoke_token

    with handle_errors(as_json=as_json):
        entry = revoke_token(credentials, label)
        if as_json:
            emit_json({"revoked": entry.label, "role": entry.role})
            return
        console.print(f"revoked token {entry.label!r} ({entry.role})", highlight=False)
