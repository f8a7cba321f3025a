#!/opt/tmc/bin/python
"""Container health check: is a Flower health server answering SERVING?

    tmc-healthcheck 127.0.0.1:8081      exit 0: serving; 1: not (the reason on stderr)

Flower 1.42's flower-superlink, flower-superexec and flower-supernode start a gRPC health
service (grpc.health.v1, plain text) at ``--health-server-address`` once they are up
(flwr/supercore/grpc_health/health_server.py). A TCP connect only says that a port is
bound; this asks the process. Keep that address on loopback: it has no TLS.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: tmc-healthcheck HOST:PORT\n")
        return 2
    try:
        with grpc.insecure_channel(argv[0]) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as exc:
        sys.stderr.write(f"unhealthy: health server {argv[0]}: {exc.code().name}\n")
        return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        sys.stderr.write(f"unhealthy: {argv[0]} reports status {reply.status}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
