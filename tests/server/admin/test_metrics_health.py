"""What an operator watches on the admin server: Prometheus ``/metrics`` (parsed with
prometheus-client's own parser) read from the registry at scrape time, so a forget made
by another process shows at the next scrape; the gRPC health service answering SERVING
without a token; and ``tmc admin serve``'s log lines as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import Processes, free_port, wait_for_port
from tests.server.admin.admin_helpers import Pki, Tokens
from tmc.server.admin import ADMIN_SERVICE, TLSFiles, refusal_kind, serve
from tmc.server.registry import Registry

REPO = Path(__file__).resolve().parents[3]
HEALTHCHECK = REPO / "deploy" / "image" / "healthcheck.py"  # the containers' tmc-healthcheck

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _health(port: int, ca: Path, service: str) -> int:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
    return int(answer.status)


def test_metrics_follow_the_registry_and_health_says_serving(
    root: Path, tokens: Tokens, pki: Pki
) -> None:
    server = serve(
        root,
        credentials_path=tokens.path,
        port=0,
        tls=TLSFiles(pki.server_cert, pki.server_key),
        metrics_port=0,
    )
    tls_check = [str(pki.ca_cert), f"127.0.0.1:{server.port}"]
    try:
        assert server.metrics is not None
        before = _scrape(server.metrics.port)
        assert before[("tmc_components", (("status", "active"),))] == 12
        assert before[("tmc_components_accepted_total", ())] == 12
        assert before[("tmc_model_version", ())] == 1
        assert before[("tmc_model_components", ())] == 12
        assert before[("tmc_forgets_total", ())] == 0
        assert before[("tmc_components_refused_total", (("reason", "forgotten"),))] == 0

        # Another process (here, another handle) forgets a silo, then refuses it.
        with Registry.open(root) as other:
            other.forget(silo="silo-0", actor="operator", reason="withdrew consent")
            other.reject(silo="silo-0", round=3, reason="forgotten on 2026-12-08: consent")
            other.reject(silo="silo-9", round=3, reason="no reply within round-timeout")
        after = _scrape(server.metrics.port)
        assert after[("tmc_components", (("status", "active"),))] == 10
        assert after[("tmc_components", (("status", "forgotten"),))] == 2
        assert after[("tmc_forgets_total", ())] == 2  # one per component removed
        assert after[("tmc_model_version", ())] == 2
        assert after[("tmc_silos", (("standing", "forgotten"),))] == 1
        assert after[("tmc_components_refused_total", (("reason", "forgotten"),))] == 1
        assert after[("tmc_components_refused_total", (("reason", "timeout"),))] == 1
        assert _scrape(server.metrics.port) == after  # the audit is not counted twice

        serving = health_pb2.HealthCheckResponse.SERVING
        assert _health(server.port, pki.ca_cert, "") == serving
        assert _health(server.port, pki.ca_cert, ADMIN_SERVICE) == serving
        assert _healthcheck("--tls-ca", *tls_check) == 0  # compose's admin health check
        assert _healthcheck("--http", f"http://127.0.0.1:{server.metrics.port}/") == 0
    finally:
        server.stop(grace=1.0)
    assert _healthcheck("--tls-ca", *tls_check) == 1  # stopped: unhealthy


def _healthcheck(*args: str) -> int:
    done = subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode


def test_refusal_reasons_fall_into_few_kinds() -> None:
    assert refusal_kind("forgotten on 2026-01-02T00:00:00Z: consent") == "forgotten"
    assert refusal_kind("no answer to hello within hello-timeout") == "timeout"
    assert refusal_kind("node 3 is registered as 'a' but claims silo 'b'") == "identity"
    assert refusal_kind("class(es) 'horse' are not in the federation's label space") == "data"
    assert refusal_kind("dp-epsilon unset vs at most 8") == "privacy"
    assert refusal_kind("something new") == "other"


def test_admin_serve_logs_json_lines(tmp_path: Path, root: Path, tokens: Tokens) -> None:
    port, metrics = free_port(), free_port()
    env = {**os.environ, "TMC_LOG_LEVEL": "info"}
    tmc = str(Path(sys.executable).parent / "tmc")
    with Processes(log_dir=tmp_path / "logs", env=env) as group:
        admin = group.start(
            "admin",
            [
                tmc,
                "--log-format",
                "json",
                "admin",
                "serve",
                "--registry",
                str(root),
                "--credentials",
                str(tokens.path),
                "--insecure",
                "--port",
                str(port),
                "--metrics-port",
                str(metrics),
            ],
        )
        wait_for_port("127.0.0.1", metrics, timeout=120, watch=[admin])
        assert _scrape(metrics)[("tmc_model_version", ())] == 1
        group.stop(admin)
    lines = [line for line in admin.log.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    serving = [r for r in records if r["logger"] == "tmc.server.admin.server"]
    assert any(r["message"].startswith("admin API serving registry") for r in serving), lines
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert {r["level"] for r in serving} == {"info"}
