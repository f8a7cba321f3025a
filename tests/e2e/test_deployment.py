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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from common.models import MaterializedBase
from server.registry import Registry
from tests.processes import (
    Managed,
    ProcessError,
    Processes,
    children,
    command_line,
    free_port,
    wait_for_port,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
SILOS = ("silo-0", "silo-1")
INTRUDER = "intruder"
RUN_CONFIG = (
    'registry="{registry}" rounds=2 increments=2 epochs=3 min-silos=2 '
    "require-authenticated-silos=true wait-seconds=120"
)


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


def _tool(name: str) -> str:
    return str(BIN / name)


@pytest.fixture
def processes(tmp_path: Path, tmc_cache: Path) -> Iterator[Processes]:
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "TMC_CACHE_DIR": str(tmc_cache),  # the ServerApp finds the pre-trained base here
        "FLWR_HOME": str(tmp_path / "credentials" / "flwr"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("TMC_ADMIN_TOKEN", None)
    group = Processes(log_dir=tmp_path / "logs", env=env)
    try:
        yield group
    finally:
        survivors = group.stop_all()
        assert not survivors, f"processes survived the test: {survivors}"


def _in_parallel(group: Processes, jobs: dict[str, list[str]], timeout: float) -> None:
    started = [group.start(name, argv) for name, argv in jobs.items()]
    deadline = time.monotonic() + timeout
    for process in started:
        try:
            process.popen.wait(timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:
            raise ProcessError(f"{process.describe()}") from exc
        if process.popen.returncode != 0:
            raise ProcessError(f"{process.name} failed: {process.describe()}")


def _prepare(group: Processes, layout: Layout, port: int) -> None:
    """Keys and certificates (deploy script), and two silos of digits, at the same time."""
    _in_parallel(
        group,
        {
            "credentials": [
                sys.executable,
                str(REPO / "deploy" / "credentials.py"),
                "--out",
                str(layout.credentials),
                "--silos",
                ",".join((*SILOS, INTRUDER)),
                "--hosts",
                "localhost,127.0.0.1",
                "--superlink",
                f"{HOST}:{port}",
            ],
            "export": [
                _tool("tmc"),
                "data",
                "export",
                "--out",
                str(layout.data),
                "--silos",
                str(len(SILOS)),
                "--increments",
                "2",
            ],
        },
        timeout=120,
    )


def _start_server_side(group: Processes, layout: Layout, port: int) -> Managed:
    tls = layout.credentials / "superlink"
    superlink = group.start(
        "superlink",
        [
            _tool("flower-superlink"),
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
        "superexec-serverapp",
        [
            _tool("flower-superexec"),
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


def _start_silo(
    group: Processes, layout: Layout, port: int, *, key_of: str, data_of: str
) -> Managed:
    """``tmc silo start``: checks its inputs, then execs flower-supernode."""
    return group.start(
        f"node-{key_of}",
        [
            _tool("tmc"),
            "silo",
            "start",
            "--superlink",
            f"{HOST}:{port}",
            "--silo",
            data_of,
            "--data",
            str(layout.data / data_of),
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


def _flwr_json(group: Processes, name: str, argv: list[str]) -> dict[str, object]:
    _, output = group.run(name, [_tool("flwr"), *argv, "--format", "json"], timeout=60)
    document = output[output.index("{") :]
    return json.loads(document[: document.rindex("}") + 1])


def _online_nodes(group: Processes) -> list[dict[str, str]]:
    listing = _flwr_json(group, f"list-{time.monotonic_ns()}", ["supernode", "list", "tmc"])
    nodes = listing["nodes"]
    assert isinstance(nodes, list)
    return [n for n in nodes if n["status"] == "online"]


def _components(layout: Layout) -> Callable[[], dict[str, list[str]]]:
    def read() -> dict[str, list[str]]:
        with Registry.open(layout.registry, actor="e2e-test") as registry:
            by_silo: dict[str, list[str]] = {}
            for record in registry.list_components():
                by_silo.setdefault(record.silo, []).append(record.id)
            return by_silo

    return read


def _call_without_token(port: int, ca: Path) -> grpc.StatusCode:
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
    _prepare(group, layout, port)
    superlink = _start_server_side(group, layout, port)

    # Register the two silos' keys under their silo names; the intruder's key never is.
    _in_parallel(
        group,
        {
            f"register-{silo}": [
                _tool("flwr"),
                "supernode",
                "register",
                str(layout.silo(silo) / "node.pub"),
                "tmc",
                "--name",
                silo,
            ]
            for silo in SILOS
        },
        timeout=60,
    )
    nodes = [_start_silo(group, layout, port, key_of=s, data_of=s) for s in SILOS]
    # Same data and silo name as silo-1, but a key the SuperLink does not know.
    intruder = _start_silo(group, layout, port, key_of=INTRUDER, data_of=SILOS[1])
    wait_until(
        lambda: len(_online_nodes(group)) >= 2,
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
        [_tool("flwr"), "run", str(REPO), "tmc", "--run-config", run_config, "--stream"],
        timeout=420,
        cwd=tmp_path,
    )

    # The admin API over TLS (it needs the registry the run created); meanwhile, checks.
    admin_port = free_port()
    admin_tls = layout.credentials / "admin"
    admin = group.start(
        "admin",
        [
            _tool("tmc"),
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
    runs = _flwr_json(group, "flwr-ls", ["ls", "tmc"])["runs"]
    assert isinstance(runs, list)
    assert [r["status"] for r in runs] == ["finished:completed"], run_output[-3000:]
    online = _online_nodes(group)
    assert len(online) == 2, online  # the two registered silos, nobody else
    before = _components(layout)()
    assert sorted(before) == list(SILOS), before
    assert [len(before[s]) for s in SILOS] == [2, 2], before

    wait_for_port(HOST, admin_port, timeout=120, watch=[admin])
    no_token = _call_without_token(admin_port, admin_tls / "ca.crt")
    assert no_token == grpc.StatusCode.UNAUTHENTICATED, no_token
    bogus = tmp_path / "bogus.token"
    bogus.write_text("tmc_not-a-real-token\n")
    remote = ["--server", f"localhost:{admin_port}", "--ca-cert", str(admin_tls / "ca.crt")]
    forget = [_tool("tmc"), "forget", "--reason", "e2e: withdrew consent", *remote]
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
    after = _components(layout)()
    assert after == {SILOS[1]: before[SILOS[1]]}, after

    status, verify = group.run(
        "verify",
        [_tool("tmc"), "registry", "verify", "--registry", str(layout.registry)],
        timeout=120,
    )
    assert status == 0, verify

    assert not group.stop_all()
    assert not children(os.getpid()), [command_line(p) for p in children(os.getpid())]
    seconds = time.monotonic() - began
    record_property("e2e_seconds", round(seconds, 1))
    sys.stderr.write(f"\ne2e deployment test: {seconds:.1f} s\n")
