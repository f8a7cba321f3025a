"""The deployment topology as processes on loopback, shared by the end-to-end tests
(import as ``tests.e2e.deployment``): credentials, SuperLink + ServerApp executor, silo
nodes, and small readers of Flower's and the registry's state."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.processes import (
    Managed,
    ProcessError,
    Processes,
    free_port,
    wait_for_port,
)
from tmc.server.registry import Registry

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
SILOS = ("silo-0", "silo-1")
INTRUDER = "intruder"
RUN_CONFIG = (
    'registry="{registry}" rounds=2 increments=2 epochs=3 min-silos=2 '
    "require-authenticated-silos=true wait-seconds=120"
)


# What one silo node's process does for a train message, timed in a fresh interpreter:
# import the ClientApp, read the silo's export, load θ0 from the cache, train increment 0.
_STEP_SCRIPT = """
import sys, time
from pathlib import Path
start = time.perf_counter()
import tmc.client.app
from tmc.common.data import load_silo_dir
from tmc.common.federation.config import FederationConfig
from tmc.common.models import BaseModelSpec, materialize
from tmc.common.tangent import TangentModel
from tmc.common.training import train_tangent
silo = load_silo_dir(Path(sys.argv[1]))
base = materialize(BaseModelSpec.builtin_digits())
config = FederationConfig.from_run_config({"epochs": int(sys.argv[2])}).train_config()
train_tangent(TangentModel(base.network, base.tangent_names), silo.shard(0), config)
print(f"step-seconds {time.perf_counter() - start:.3f}")
"""
ROUND_STEPS = 6.0
"""A round timeout is this many measured node steps: a round sends hello, θ0 and train
messages (a fresh process each), and the nodes share the machine's cores."""
ROUND_FLOOR_S = 30.0
WAIT_STEPS = 20.0
"""A wait for processes to get somewhere (nodes online, θ0 received, a run finished) is a
hang guard: this many measured node steps, at least its idle-machine figure."""


def round_timeout(step_s: float) -> float:
    """The round timeout for a machine whose node step took ``step_s`` seconds."""
    return max(ROUND_FLOOR_S, ROUND_STEPS * step_s)


def patience(step_s: float, floor_s: float) -> float:
    """How long to wait for something that takes ``floor_s`` on an idle machine."""
    return max(floor_s, WAIT_STEPS * step_s)


@dataclass(frozen=True)
class Layout:
    """Where one deployment keeps its files."""

    root: Path

    @property
    def credentials(self) -> Path:
        return self.root / "credentials"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def flwr_home(self) -> Path:
        return self.credentials / "flwr"

    def silo(self, name: str) -> Path:
        return self.credentials / "silos" / name


def tool(name: str) -> str:
    return str(BIN / name)


def in_parallel(group: Processes, jobs: dict[str, list[str]], timeout: float) -> None:
    started = [group.start(name, argv) for name, argv in jobs.items()]
    deadline = time.monotonic() + timeout
    for process in started:
        try:
            process.popen.wait(timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:
            raise ProcessError(f"{process.describe()}") from exc
        if process.popen.returncode != 0:
            raise ProcessError(f"{process.name} failed: {process.describe()}")


def measure_node_step(group: Processes, layout: Layout, silo: str, *, epochs: int) -> float:
    """Seconds one node step takes on this machine now (loaded or not): a fresh
    interpreter importing the ClientApp and training ``silo``'s first increment."""
    _, output = group.run(
        f"measure-step-{silo}",
        [sys.executable, "-c", _STEP_SCRIPT, str(layout.data / silo), str(epochs)],
        timeout=1800,  # a hang guard only: what it measures sets the timeouts
    )
    found = re.search(r"step-seconds ([0-9.]+)", output)
    if found is None:
        raise ProcessError(f"the node step measurement printed no time: {output[-500:]}")
    return float(found.group(1))


def prepare(
    group: Processes,
    layout: Layout,
    port: int,
    *,
    silos: tuple[str, ...] = SILOS,
    extra_keys: tuple[str, ...] = (INTRUDER,),
    increments: int = 2,
    export: bool = True,
) -> None:
    """Keys and certificates (deploy script) for ``silos`` and ``extra_keys``, and (with
    ``export``) the silos' digits data, at the same time."""
    export_argv = [
        tool("tmc"),
        "data",
        "export",
        "--out",
        str(layout.data),
        "--silos",
        str(len(silos)),
        "--increments",
        str(increments),
    ]
    in_parallel(
        group,
        {
            "credentials": [
                sys.executable,
                str(REPO / "deploy" / "credentials.py"),
                "--out",
                str(layout.credentials),
                "--silos",
                ",".join((*silos, *extra_keys)),
                "--hosts",
                "localhost,127.0.0.1",
                "--superlink",
                f"{HOST}:{port}",
            ],
            **({"export": export_argv} if export else {}),
        },
        timeout=120,
    )


def start_server_side(group: Processes, layout: Layout, port: int, *, suffix: str = "") -> Managed:
    """The SuperLink (TLS, SQLite state, node authentication) and its ServerApp executor;
    ``suffix`` names the processes of a restart apart."""
    tls = layout.credentials / "superlink"
    superlink = group.start(
        f"superlink{suffix}",
        [
            tool("flower-superlink"),
            "--ssl-ca-certfile",
            str(tls / "ca.crt"),
            "--ssl-certfile",
            str(tls / "server.pem"),
            "--ssl-keyfile",
            str(tls / "server.key"),
            "--database",
            str(layout.root / "superlink.db"),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--isolation",
            "process",
            "--superexec-auth-secret-file",
            str(tls / "superexec.secret"),
            "--host",
            HOST,
            "--port",
            str(port),
        ],
    )
    wait_for_port(HOST, port, timeout=60, watch=[superlink])
    group.start(
        f"superexec-serverapp{suffix}",
        [
            tool("flower-superexec"),
            "--runtime-api-address",
            f"{HOST}:{port}",
            "--root-certificates",
            str(tls / "ca.crt"),
            "--superexec-auth-secret-file",
            str(tls / "superexec.secret"),
        ],
        env={"FLWR_HOME": str(layout.root / "superexec-home")},
    )
    return superlink


def register_silos(group: Processes, layout: Layout, silos: tuple[str, ...]) -> dict[str, str]:
    """``flwr supernode register`` each silo's public key under the silo's name; returns
    each silo's node id (it follows the key across restarts)."""
    in_parallel(
        group,
        {
            f"register-{silo}": [
                tool("flwr"),
                "supernode",
                "register",
                str(layout.silo(silo) / "node.pub"),
                "tmc",
                "--name",
                silo,
            ]
            for silo in silos
        },
        timeout=60,
    )
    ids: dict[str, str] = {}
    for silo in silos:
        log = next(p for p in group.started if p.name == f"register-{silo}").log.read_text()
        found = re.search(r"SuperNode (\d+) registered", log)
        if found is None:
            raise ProcessError(f"no node id in the registration of {silo}: {log[-500:]}")
        ids[silo] = found.group(1)
    return ids


def node_status(group: Processes, node_id: str) -> str:
    """The SuperLink's view of one node (``online``, ``offline``, ...)."""
    listing = flwr_json(group, f"list-{time.monotonic_ns()}", ["supernode", "list", "tmc"])
    nodes = listing["nodes"]
    assert isinstance(nodes, list)
    return next((str(n["status"]) for n in nodes if str(n["node-id"]) == node_id), "unknown")


def start_silo(
    group: Processes,
    layout: Layout,
    port: int,
    *,
    key_of: str,
    data_of: str,
    suffix: str = "",
    data_dir: Path | None = None,
) -> Managed:
    """``tmc silo start``: checks its inputs, then execs flower-supernode. The data are the
    export of silo ``data_of``, or ``data_dir`` (a plain image folder)."""
    return group.start(
        f"node-{key_of}{suffix}",
        [
            tool("tmc"),
            "silo",
            "start",
            "--superlink",
            f"{HOST}:{port}",
            "--silo",
            data_of,
            "--data",
            str(data_dir or layout.data / data_of),
            "--root-certificates",
            str(layout.silo(key_of) / "ca.crt"),
            "--auth-key",
            str(layout.silo(key_of) / "node.key"),
            "--cache-dir",
            str(layout.root / f"cache-{key_of}"),
            "--runtime-port",
            str(free_port()),
        ],
        env={"FLWR_HOME": str(layout.root / f"home-{key_of}")},
    )


def flwr_json(group: Processes, name: str, argv: list[str]) -> dict[str, object]:
    _, output = group.run(name, [tool("flwr"), *argv, "--format", "json"], timeout=60)
    document = output[output.index("{") :]
    return json.loads(document[: document.rindex("}") + 1])


def online_nodes(group: Processes) -> list[dict[str, str]]:
    listing = flwr_json(group, f"list-{time.monotonic_ns()}", ["supernode", "list", "tmc"])
    nodes = listing["nodes"]
    assert isinstance(nodes, list)
    return [n for n in nodes if n["status"] == "online"]


def rejections(layout: Layout) -> dict[str, list[str]]:
    """Each silo's refusal reasons in the audit log, oldest first."""
    with Registry.open(layout.registry, actor="e2e-test") as registry:
        found: dict[str, list[str]] = {}
        for event in registry.audit_log():
            if event.action == "reject" and event.silo:
                found.setdefault(event.silo, []).append(str(event.details.get("reason")))
        return found


def components(layout: Layout) -> Callable[[], dict[str, list[str]]]:
    def read() -> dict[str, list[str]]:
        with Registry.open(layout.registry, actor="e2e-test") as registry:
            by_silo: dict[str, list[str]] = {}
            for record in registry.list_components():
                by_silo.setdefault(record.silo, []).append(record.id)
            return by_silo

    return read


def call_without_token(port: int, ca: Path) -> grpc.StatusCode:
    """A raw admin call with no credential in its metadata."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        status = channel.unary_unary(
            "/tmc.admin.v1.RegistryAdmin/Status",
            request_serializer=lambda _: b"",
            response_deserializer=lambda data: data,
        )
        try:
            status(None, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK
