#!/opt/tmc/bin/python
"""Container health check: is a health service answering SERVING?

    tmc-healthcheck 127.0.0.1:8081                      Flower's plain-text gRPC health
    tmc-healthcheck --tls-ca CA.crt 127.0.0.1:9440      the admin API's, over its TLS
    tmc-healthcheck --http http://127.0.0.1:8080/healthz  an HTTP service: 200 is healthy

exit 0: serving; 1: not (the reason on stderr); 2: usage.

Flower 1.42's flower-superlink, flower-superexec and flower-supernode start a gRPC health
service (grpc.health.v1, plain text) at ``--health-server-address`` once they are up
(flwr/supercore/grpc_health/health_server.py). The admin API serves the same service on its
own TLS port (``--server-name`` is the name its certificate holds, ``localhost`` by
default). A TCP connect only says that a port is bound; this asks the process.
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

USAGE = (
    "usage: tmc-healthcheck [--tls-ca FILE [--server-name NAME]] HOST:PORT\n"
    "       tmc-healthcheck [--tls-ca FILE] --http URL\n"
)


def check_http(url: str, ca: str | None = None) -> int:
    # An https:// service inside the container answers on loopback with the certificate of
    # its public name: the chain is checked against ``ca``, the name is not.
    context = None
    if ca is not None:
        try:
            context = ssl.create_default_context(cafile=ca)
        except OSError as exc:
            sys.stderr.write(f"unhealthy: cannot read the CA certificate: {exc}\n")
            return 1
        context.check_hostname = False
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:
            status = answer.status
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"unhealthy: {url}: {exc}\n")
        return 1
    if status != 200:
        sys.stderr.write(f"unhealthy: {url} answered HTTP {status}\n")
        return 1
    return 0


def check_grpc(address: str, ca: str | None, server_name: str) -> int:
    try:
        if ca is None:
            channel = grpc.insecure_channel(address)
        else:
            with open(ca, "rb") as handle:
                credentials = grpc.ssl_channel_credentials(root_certificates=handle.read())
            channel = grpc.secure_channel(
                address, credentials, options=[("grpc.ssl_target_name_override", server_name)]
            )
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    except OSError as exc:
        sys.stderr.write(f"unhealthy: cannot read the CA certificate: {exc}\n")
        return 1
    except grpc.RpcError as exc:
        sys.stderr.write(f"unhealthy: health server {address}: {exc.code().name}\n")
        return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        sys.stderr.write(f"unhealthy: {address} reports status {reply.status}\n")
        return 1
    return 0


def main(argv: list[str]) -> int:
    options: dict[str, str] = {}
    args = list(argv)
    while len(args) > 1 and args[0] in ("--http", "--tls-ca", "--server-name"):
        options[args[0]] = args[1]
        args = args[2:]
    if "--http" in options:
        if args or "--server-name" in options:
            sys.stderr.write(USAGE)
            return 2
        return check_http(options["--http"], options.get("--tls-ca"))
    if len(args) != 1 or ("--server-name" in options and "--tls-ca" not in options):
        sys.stderr.write(USAGE)
        return 2
    return check_grpc(args[0], options.get("--tls-ca"), options.get("--server-name", "localhost"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
