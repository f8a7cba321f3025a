"""``tmc serve`` as a real process on a free loopback port: it answers over HTTP, refuses
a 100 MB body before reading it, and drops a forgotten silo without a restart."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.processes import Processes, free_port, wait_until
from tmc.server.registry import Registry

BATCH = np.zeros((2, 1, 8, 8), dtype=np.float32).tolist()


def _declared_body_answer(port: int, size: int, headers: dict[str, str]) -> bytes:
    """The answer to a request that declares ``size`` body bytes but sends only 1 KB of
    them: an answer at all shows the server did not wait to read the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = ["POST /v1/predict HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {size}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock.sendall(b"0" * 1024)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.slow  # a real `tmc serve` process
def test_tmc_serve_over_http(registry: Path, credentials: tuple[Path, str], tmp_path: Path) -> None:
    path, token = credentials
    port = free_port()
    headers = {"authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}"
    argv = [str(Path(sys.executable).parent / "tmc"), "serve", "--registry", str(registry)]
    argv += ["--credentials", str(path), "--port", str(port), "--json"]
    with Processes(tmp_path / "logs") as group:
        server = group.start("serve", argv)
        wait_until(lambda: _healthy(url), timeout=120, what="tmc serve's /healthz", watch=[server])
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            first = client.post("/v1/predict", json={"inputs": BATCH})
            assert first.status_code == 200, first.text
            assert first.json()["version"] == 2

            answer = _declared_body_answer(
                port, 100 * 1024 * 1024, {**headers, "Content-Type": "application/json"}
            )
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

            with Registry.open(registry, actor="test") as opened:
                gone = {r.id for r in opened.list_components(silo="silo-0")}
                result = opened.forget(silo="silo-0", actor="test")
            after = client.post("/v1/predict", json={"inputs": BATCH}).json()
            assert after["version"] == result.version.number
            assert not gone & set(after["component_ids"])
            metrics = client.get("/metrics").text
            assert "tmc_serve_model_invalidations_total 1.0" in metrics
        log = server.log.read_text()
        start = json.loads(log[log.index("{") : log.index("}") + 1])
        assert start["url"] == url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).json().get("status") == "ok"
    except (httpx.HTTPError, ValueError):
        time.sleep(0.2)
        return False
