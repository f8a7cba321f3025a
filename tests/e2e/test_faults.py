"""Faults in a real deployment (SuperLink with TLS, SQLite state and node authentication;
three silo SuperNodes), as Flower's reconnection tests and FLARE's kill-the-server tests do:

1. a SuperNode killed mid-training: the round completes with the others within its
   timeout, and the failure is recorded;
2. that SuperNode restarted (same key): it keeps its silo identity and contributes again;
3. the SuperLink restarted between runs (same state database): the next run continues the
   registry;
4. the ServerApp killed mid-round: the components committed before the kill are kept, and
   a new run goes on.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.deployment import (
    REPO,
    Layout,
    measure_node_step,
    node_status,
    online_nodes,
    patience,
    prepare,
    register_silos,
    round_timeout,
    start_server_side,
    start_silo,
    tool,
)
from tests.processes import Managed, Processes, command_line, free_port, tagged, wait_until
from tmc.common.models import MaterializedBase
from tmc.server.registry import Registry

# A hang guard for the whole test; every wait inside follows from a measured node step.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

SILOS = ("silo-0", "silo-1", "silo-2")
CONFIG = (
    'registry="{registry}" rounds=1 increments=3 epochs=2 min-silos={min_silos} '
    "require-authenticated-silos=true evaluate-federated=false wait-seconds=120 "
    "round-timeout={timeout}"
)


def _records(layout: Layout) -> list[tuple[str, int, int, str]]:
    """(silo, increment, round, id) of every component, forgotten ones included."""
    if not (layout.registry / "registry.db").exists():
        return []
    with Registry.open(layout.registry, actor="fault-test") as registry:
        return sorted(
            (r.silo, r.increment, r.round, r.id) for r in registry.list_components(status="all")
        )


def _rejections(layout: Layout) -> list[tuple[str | None, str]]:
    with Registry.open(layout.registry, actor="fault-test") as registry:
        return [
            (e.silo, str(e.details.get("reason")))
            for e in registry.audit_log()
            if e.action == "reject"
        ]


def _flwr_run(group: Processes, layout: Layout, name: str, **values: object) -> Managed:
    config = CONFIG.format(registry=layout.registry, **values)
    return group.start(
        name, [tool("flwr"), "run", str(REPO), "tmc", "--run-config", config, "--stream"]
    )


def _finish(run: Managed, step: float) -> str:
    run.popen.wait(timeout=patience(step, 420))
    return run.tail(60)


def _kill_group(process: Managed) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.popen.wait(timeout=30)


def test_faults_in_a_real_deployment(
    tmp_path: Path, digits_base: MaterializedBase, processes: Processes
) -> None:
    layout = Layout(tmp_path)
    group = processes
    port = free_port()
    prepare(group, layout, port, silos=SILOS, extra_keys=(), increments=3)
    # Timeouts follow from how fast this machine is now (a loaded 2-core machine took
    # several times longer than an idle one): one node step, measured before the nodes run.
    step = measure_node_step(group, layout, "silo-0", epochs=2)
    superlink = start_server_side(group, layout, port)
    node_ids = register_silos(group, layout, SILOS)
    nodes = {s: start_silo(group, layout, port, key_of=s, data_of=s) for s in SILOS}
    wait_until(
        lambda: len(online_nodes(group)) >= 3,
        timeout=patience(step, 180),
        what="three silo nodes online",
        watch=[superlink, *nodes.values()],
        interval=1.0,
    )

    # 1. silo-2's node dies while the round trains: once it holds θ0, train is next. The
    # round waits for it until the timeout, which must not be so short that a healthy silo
    # on a loaded machine misses it: it follows from the node step measured above.
    run = _flwr_run(group, layout, "run-1", min_silos=3, timeout=round_timeout(step))
    theta0 = layout.root / "cache-silo-2" / "theta0"
    wait_until(
        lambda: theta0.is_dir() and any(theta0.glob("*.safetensors")),
        timeout=patience(step, 240),
        what="silo-2 to receive θ0",
        watch=[run, nodes["silo-2"]],
    )
    time.sleep(1.0)
    _kill_group(nodes["silo-2"])
    output = _finish(run, step)
    records = _records(layout)
    assert [(s, i, r) for s, i, r, _ in records] == [("silo-0", 0, 1), ("silo-1", 0, 1)], output
    rejected = dict(_rejections(layout))
    assert "silo-2" in rejected, rejected  # recorded, with its reason
    first_ids = {c for *_, c in records}

    # 2. and 3. The SuperLink restarts on its state; silo-2's node comes back, same key,
    # once the SuperLink has seen it go (a key is active on one node at a time).
    wait_until(
        lambda: node_status(group, node_ids["silo-2"]) != "online",
        timeout=patience(step, 300),
        what="the SuperLink to mark silo-2's dead node offline",
        interval=5.0,
    )
    for name in ("superexec-serverapp", "superlink"):
        _kill_group(next(p for p in group.started if p.name == name))
    superlink = start_server_side(group, layout, port, suffix="-restarted")
    nodes["silo-2"] = start_silo(
        group, layout, port, key_of="silo-2", data_of="silo-2", suffix="-restarted"
    )
    wait_until(
        lambda: (
            node_status(group, node_ids["silo-2"]) == "online" and len(online_nodes(group)) >= 3
        ),
        timeout=patience(step, 180),
        what="all three nodes online after the restarts",
        watch=[superlink, *nodes.values()],
        interval=1.0,
    )
    # Runs 2 to 4 lose no silo: a long round timeout costs nothing there.
    healthy = patience(step, 300)
    output = _finish(_flwr_run(group, layout, "run-2", min_silos=3, timeout=healthy), step)
    records = _records(layout)
    assert first_ids <= {c for *_, c in records}, output  # nothing lost or retrained
    assert [(s, i, r) for s, i, r, _ in records] == [
        ("silo-0", 0, 1),
        ("silo-0", 1, 2),
        ("silo-1", 0, 1),
        ("silo-1", 1, 2),
        ("silo-2", 0, 2),  # the restarted node is still silo-2, and catches up
    ], output

    # 4. The ServerApp dies once the round has committed a component; a new run goes on.
    before = len(records)
    run = _flwr_run(group, layout, "run-3", min_silos=3, timeout=healthy)
    wait_until(
        lambda: len(_records(layout)) > before,
        timeout=patience(step, 300),
        what="a component committed in round 3",
        watch=[run],
    )
    serverapps = [
        pid for pid in tagged(group.tag) if any("flwr-serverapp" in a for a in command_line(pid))
    ]
    assert serverapps, "no ServerApp process found"
    for pid in serverapps:
        os.kill(pid, signal.SIGKILL)
    # `flwr run` would only return once the SuperLink gives up on the dead ServerApp
    # (its heartbeat expires, about 50 s here); the next run need not wait for that.
    _kill_group(run)
    kept = _records(layout)
    assert len(kept) > before
    with Registry.open(layout.registry, actor="fault-test") as registry:
        assert registry.verify().ok  # what was committed before the kill is intact
    output = _finish(_flwr_run(group, layout, "run-4", min_silos=3, timeout=healthy), step)
    final = _records(layout)
    assert {c for *_, c in kept} <= {c for *_, c in final}, output
    silo2 = [0, 1] + ([2] if ("silo-2", 1) in {(s, i) for s, i, _, _ in kept} else [])
    assert sorted((s, i) for s, i, _, _ in final) == sorted(
        [(s, i) for s in ("silo-0", "silo-1") for i in range(3)] + [("silo-2", i) for i in silo2]
    ), output
    with Registry.open(layout.registry, actor="fault-test") as registry:
        assert registry.verify().ok
