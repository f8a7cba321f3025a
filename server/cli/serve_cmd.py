"""``tmc serve``: the inference service over a registry (``tmc.server.serving``)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated

import typer

from tmc.common.errors import ConfigError
from tmc.server.cli.admin_cmds import CredentialsOption
from tmc.server.cli.options import JsonOption
from tmc.server.cli.output import emit_json, err_console, handle_errors
from tmc.server.serving.settings import MIB, ServeSettings

DEFAULT_SERVE_PORT = 8470


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def serve(
    registry: Annotated[Path, typer.Option("--registry", help="registry folder to serve")],
    credentials: CredentialsOption,
    host: Annotated[
        str, typer.Option(help="address to listen on (loopback unless you mean otherwise)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free)")] = (
        DEFAULT_SERVE_PORT
    ),
    max_batch: Annotated[int, typer.Option(min=1, help="inputs per request, at most")] = 64,
    max_body_mb: Annotated[
        float, typer.Option(min=0.001, help="request body size in MiB, at most")
    ] = 16.0,
    poll: Annotated[
        float, typer.Option(min=0.01, help="seconds between looks at the registry")
    ] = 0.25,
    wait: Annotated[
        float,
        typer.Option(min=0.0, help="seconds a request may wait for a model after a forget"),
    ] = 5.0,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="serve HTTPS: certificate chain (PEM)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="its key (PEM)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Serve the registry's current composed model over HTTP until SIGINT or SIGTERM.

    POST /v1/predict (JSON arrays or PNG/JPEG files), GET /v1/model, GET /metrics
    (Prometheus), GET /healthz, OpenAPI at /docs. Every request but /healthz and the
    docs needs a bearer token of the credentials file (`tmc admin token create`). New
    versions and forgets are followed without a restart; a version that contained a
    forgotten component is never answered from again. --json prints the address as JSON.
    """
    import uvicorn

    from tmc.server.serving import create_app

    with handle_errors(as_json=as_json):
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("give both --tls-cert and --tls-key, or neither")
        for path in (tls_cert, tls_key):
            if path is not None and not path.is_file():
                raise ConfigError(f"{path} does not exist (or is not a file)")
        settings = ServeSettings(
            registry=registry,
            credentials=credentials,
            max_batch=max_batch,
            max_body_bytes=int(max_body_mb * MIB),
            poll_s=poll,
            wait_s=wait,
        )
        app = create_app(settings)
        sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    scheme = "https" if tls_cert is not None else "http"
    url = f"{scheme}://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
    if not ipaddress.ip_address(bound_host).is_loopback:
        err_console.print(
            f"warning: listening on {bound_host}, reachable from other machines"
            + ("" if tls_cert else " in plain text (give --tls-cert/--tls-key)"),
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        emit_json({"url": url, "registry": str(registry), "credentials": str(credentials)})
    else:
        err_console.print(
            f"serving {registry} on {url} (docs: {url}/docs); stop with Ctrl-C or SIGTERM",
            highlight=False,
            soft_wrap=True,
        )
    # log_config=None: uvicorn logs through the root logger that `tmc -v` configures.
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        ws="none",  # no websocket endpoint: nor the websockets import and its warnings
        timeout_graceful_shutdown=10,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["DEFAULT_SERVE_PORT", "serve"]
