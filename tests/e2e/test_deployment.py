"""The deployment end to end, as processes on loopback (the docker-compose topology without
Docker): a SuperLink with TLS, SQLite state and SuperNode authentication; its ServerApp
executor (``flower-superexec``, shared secret); two silo nodes started by ``tmc silo start``
with registered keys; a third node whose key was never registered; ``flwr run`` for two
rounds; then the admin API over TLS forgets one silo, and the registry verifies bit for bit.

Every process runs in its own session and carries a tag (``tests.processes``); all are
stopped in ``finally``, and the test fails if any survives. Measured on a 2-core CPU
machine shared with other jobs (load 4-6): 190-270 s, most of it ``flwr run`` (every
message starts a fresh ``flwr-clientapp``, ~10 s of imports each); plus 35-90 s of fixture
setup when no earlier test has pre-trained the digits base.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from common.models import MaterializedBase
from tests.e2e.deployment import (
    HOST,
    INTRUDER,
    REPO,
    RUN_CONFIG,
    SILOS,
    Layout,
    call_without_token,
    components,
    flwr_json,
    online_nodes,
    prepare,
    register_silos,
    start_server_side,
    start_silo,
    tool,
)
from tests.processes import (
    Processes,
    children,
    command_line,
    free_port,
    wait_for_port,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def test_deployment_over_tls(
    tmp_path: Path,
    digits_base: MaterializedBase,
    processes: Processes,
    record_property: Callable[[str, object], None],
) -> None:
    began = time.monotonic()
    layout = Layout(tmp_path)
    group = processes

    port = free_port()
    prepare(group, layout, port)
    superlink = start_server_side(group, layout, port)

    # Register the two silos' keys under their silo names; the intruder's key never is.
    register_silos(group, layout, SILOS)
    nodes = [start_silo(group, layout, port, key_of=s, data_of=s) for s in SILOS]
    # Same data and silo name as silo-1, but a key the SuperLink does not know.
    intruder = start_silo(group, layout, port, key_of=INTRUDER, data_of=SILOS[1])
    wait_until(
        lambda: len(online_nodes(group)) >= 2,
        timeout=120,
        what="both silo nodes online",
        watch=[superlink, *nodes],
        interval=1.0,
    )
    assert all(command_line(n.pid)[1].endswith("flower-supernode") for n in nodes)

    # The unregistered node is refused at activation and exits: it never gets a node id.
    wait_until(lambda: not intruder.alive(), timeout=120, what="the intruder's node to give up")
    assert intruder.popen.returncode not in (0, None), intruder.describe()
    assert "Failed to activate SuperNode" in intruder.log.read_text(), intruder.describe()
    assert "No SuperNode found with the given public key" in superlink.log.read_text()

    run_config = RUN_CONFIG.format(registry=layout.registry)
    _, run_output = group.run(
        "flwr-run",
        [tool("flwr"), "run", str(REPO), "tmc", "--run-config", run_config, "--stream"],
        timeout=420,
        cwd=tmp_path,
    )

    # The admin API over TLS (it needs the registry the run created); meanwhile, checks.
    admin_port = free_port()
    admin_tls = layout.credentials / "admin"
    admin = group.start(
        "admin",
        [
            tool("tmc"),
            "admin",
            "serve",
            "--registry",
            str(layout.registry),
            "--credentials",
            str(admin_tls / "credentials.json"),
            "--tls-cert",
            str(admin_tls / "server.pem"),
            "--tls-key",
            str(admin_tls / "server.key"),
            "--host",
            HOST,
            "--port",
            str(admin_port),
        ],
    )
    runs = flwr_json(group, "flwr-ls", ["ls", "tmc"])["runs"]
    assert isinstance(runs, list)
    assert [r["status"] for r in runs] == ["finished:completed"], run_output[-3000:]
    online = online_nodes(group)
    assert len(online) == 2, online  # the two registered silos, nobody else
    before = components(layout)()
    assert sorted(before) == list(SILOS), before
    assert [len(before[s]) for s in SILOS] == [2, 2], before

    wait_for_port(HOST, admin_port, timeout=120, watch=[admin])
    no_token = call_without_token(admin_port, admin_tls / "ca.crt")
    assert no_token == grpc.StatusCode.UNAUTHENTICATED, no_token
    bogus = tmp_path / "bogus.token"
    bogus.write_text("tmc_not-a-real-token\n")
    remote = ["--server", f"localhost:{admin_port}", "--ca-cert", str(admin_tls / "ca.crt")]
    forget = [tool("tmc"), "forget", "--reason", "e2e: withdrew consent", *remote]
    refused = group.start(
        "forget-bogus", [*forget, "--silo", SILOS[1], "--token-file", str(bogus), "--json"]
    )
    group.run(
        "forget",
        [*forget, "--silo", SILOS[0], "--token-file", str(layout.credentials / "operator.token")],
        timeout=120,
    )
    refused.popen.wait(timeout=120)
    assert refused.popen.returncode == 2, refused.describe()
    answer = refused.log.read_text()
    assert json.loads(answer[answer.index("{") :])["error"] == "UnauthenticatedError", answer
    after = components(layout)()
    assert after == {SILOS[1]: before[SILOS[1]]}, after

    status, verify = group.run(
        "verify",
        [tool("tmc"), "registry", "verify", "--registry", str(layout.registry)],
        timeout=120,
    )
    assert status == 0, verify

    assert not group.stop_all()
    assert not children(os.getpid()), [command_line(p) for p in children(os.getpid())]
    seconds = time.monotonic() - began
    record_property("e2e_seconds", round(seconds, 1))
    sys.stderr.write(f"\ne2e deployment test: {seconds:.1f} s\n")
