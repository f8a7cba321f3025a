"""``tmc dashboard``: serve the operator dashboard over a registry folder (HTTP, uvicorn)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from tmc.common.errors import ConfigError
from tmc.server.cli.options import JsonOption, RegistryOption
from tmc.server.cli.output import console, emit_json, handle_errors
from tmc.server.registry import Registry

DEFAULT_PORT = 9460


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard(
    registry: RegistryOption,
    token_file: Annotated[
        Path,
        typer.Option(
            "--token-file",
            help="the admin API's credentials file (tmc admin token create): its operator "
            "tokens may look and act, its viewer tokens only look; re-read when it changes",
        ),
    ],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = DEFAULT_PORT,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="certificate chain (PEM) for HTTPS")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="its key (PEM)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Serve the operator dashboard: silos (last round, last contribution, tombstone, ε),
    versions with the accuracy per round, components, the audit log, and forget/readmit
    actions that show what they will do before they do it. Every page needs an operator or
    viewer token (log in once per browser); only an operator may forget or readmit.
    Loopback only unless served over HTTPS (--tls-cert, --tls-key), since the token would
    otherwise cross the network in clear."""
    with handle_errors(as_json=as_json):
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("give both --tls-cert and --tls-key, or neither")
        if tls_cert is None and not _loopback(host):
            raise ConfigError(
                f"{host} is not a loopback address: serving beyond this machine needs HTTPS "
                "(--tls-cert, --tls-key), or the operator token crosses the network in clear"
            )
        import uvicorn

        from tmc.server.dashboard import Sessions, create_app

        sessions = Sessions(token_file)
        with Registry.open(registry, actor="dashboard") as opened:
            app = create_app(opened, sessions, secure_cookie=tls_cert is not None)
            scheme = "https" if tls_cert is not None else "http"
            url = f"{scheme}://{host}:{port}/"
            if as_json:
                emit_json({"url": url, "registry": str(registry)})
            else:
                console.print(f"dashboard of {registry} at {url} (Ctrl-C stops)", highlight=False)
            config = uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                ssl_certfile=tls_cert,
                ssl_keyfile=tls_key,
                access_log=False,
            )
            uvicorn.Server(config).run()


__all__ = ["dashboard"]
