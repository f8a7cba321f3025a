"""``tmc serve``: the inference service over a registry (``tmc.server.serving``)."""

from __future__ import annotations

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
    url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
    if as_json:
        emit_json({"url": url, "registry": str(registry), "credentials": str(credentials)})
    else:
        err_console.print(
            f"serving {registry} on {url} (docs: {url}/docs); stop with Ctrl-C or SIGTERM",
            highlight=False,
            soft_wrap=True,
        )
    # log_config=None: uvicorn logs through the root logger that `tmc -v` configures.
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=10)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["DEFAULT_SERVE_PORT", "serve"]
