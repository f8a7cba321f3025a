"""docker-compose.yml against the installed CLIs: every flag a service passes to
``flower-superlink``, ``flower-supernode``, ``flower-superexec`` or ``tmc`` must be one that
program accepts (Flower's upstream compose files drifted from its CLI; ours must not), and
the topology must be the one docs/deployment.md describes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
import yaml

from tmc.client.cli import SiloStart

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FLOWER = ("flower-superlink", "flower-supernode", "flower-superexec")


@cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def services(*, include_profiles: bool = True) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in compose()["services"].items()
        if include_profiles or not spec.get("profiles")
    }


def command(name: str) -> list[str]:
    """The program a service runs; a ``sh -c 'wait...; exec "$@"' NAME PROGRAM ARGS...``
    wrapper (the admin API waits for the registry) is looked through."""
    value = services()[name].get("command")
    assert isinstance(value, list), f"{name}: write the command as a list (exec form)"
    argv = [str(part) for part in value]
    if argv[:2] == ["sh", "-c"]:
        assert 'exec "$$@"' in argv[2], f"{name}: a shell wrapper must end in exec"
        return argv[4:]
    return argv


# -- compose's short syntax, parsed: "SOURCE:TARGET[:MODE]", "HOST:CONTAINER", "UID:GID" ---

_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def split_fields(value: str) -> list[str]:
    """``value`` cut at the colons outside ``${...}`` (a default may hold colons)."""
    fields, depth, current = [], 0, ""
    for char in value:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == ":" and depth == 0:
            fields.append(current)
            current = ""
        else:
            current += char
    return [*fields, current]


def with_defaults(value: str) -> str:
    """``value`` as compose reads it with no variable set: ``${VAR:-default}`` is default."""
    return _VARIABLE.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else "", value)


def required_variable(value: str) -> str | None:
    """VAR when ``value`` is exactly ``${VAR:?message}`` (compose stops when VAR is unset)."""
    match = _VARIABLE.fullmatch(value)
    return match.group(1) if match and match.group(2) == ":?" else None


@dataclass(frozen=True)
class Mount:
    source: str
    """A named volume, or a host path (``${...}`` kept)."""
    target: str
    read_only: bool

    @property
    def named_volume(self) -> bool:
        return not self.source.startswith(("/", ".", "$"))


def mounts(name: str) -> list[Mount]:
    found = []
    for volume in services()[name].get("volumes", []):
        assert isinstance(volume, str), f"{name}: volumes in the short syntax"
        source, target, *mode = split_fields(volume)
        assert mode in ([], ["ro"], ["rw"]), f"{name}: {volume}"
        found.append(Mount(source, target, read_only=mode == ["ro"]))
    return found


def test_the_short_syntax_parser() -> None:
    assert split_fields("${A:-./x:y}/s:/data:ro") == ["${A:-./x:y}/s", "/data", "ro"]
    assert with_defaults("${P:-127.0.0.1:9440}") == "127.0.0.1:9440"
    assert required_variable("${TMC_UID:?set it}") == "TMC_UID"
    assert required_variable("${TMC_UID:-1000}") is None


@dataclass(frozen=True)
class Flag:
    takes_value: bool
    choices: tuple[str, ...] = ()


@cache
def flower_flags(program: str) -> dict[str, Flag]:
    """The options in ``PROGRAM --help``'s usage block (argparse's own rendering)."""
    done = subprocess.run(
        [str(BIN / program), "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    usage = done.stdout.split("\n\n")[0]
    flags: dict[str, Flag] = {}
    for match in re.finditer(r"(--[a-z0-9-]+)(?: (\{[^}]*\}|[A-Z][A-Z0-9_]*))?", usage):
        flag, value = match.group(1), match.group(2)
        choices = tuple(value.strip("{}").split(",")) if value and value[0] == "{" else ()
        flags[flag] = Flag(takes_value=value is not None, choices=choices)
    assert "--help" not in flags, usage
    assert len(flags) > 3, usage
    return flags


def split_args(args: list[str], flags: dict[str, Flag]) -> Iterator[tuple[str, str | None]]:
    """(flag, value) pairs of an argparse command line; unknown flags raise."""
    index = 0
    while index < len(args):
        flag, _, inline = args[index].partition("=")
        if flag not in flags:
            raise AssertionError(f"{flag} is not an option of this program")
        if flags[flag].takes_value:
            if not inline and "=" not in args[index]:
                index += 1
                if index >= len(args):
                    raise AssertionError(f"{flag} needs a value")
                inline = args[index]
            yield flag, inline
        else:
            if "=" in args[index]:
                raise AssertionError(f"{flag} takes no value")
            yield flag, None
        index += 1


def flower_services() -> list[str]:
    return [n for n in services() if command(n)[0] in FLOWER]


def tmc_services() -> list[str]:
    return [n for n in services() if command(n)[0] == "tmc"]


@pytest.mark.parametrize("service", flower_services())
def test_flower_flags_exist(service: str) -> None:
    program, *args = command(service)
    flags = flower_flags(program)
    for flag, value in split_args(args, flags):
        if flags[flag].choices:
            assert value in flags[flag].choices, f"{service}: {flag}={value}"


def _tmc_context(args: list[str]) -> click.Context:
    """Let click parse ``tmc ARGS`` down to the leaf command (no callback runs)."""
    from tmc.cli import app

    group: click.Command = typer.main.get_command(app)
    path = ["tmc"]
    while isinstance(group, click.Group):
        name, args = args[0], args[1:]
        sub = group.get_command(click.Context(group), name)
        assert sub is not None, f"`{' '.join(path)} {name}` is not a tmc command"
        group, path = sub, [*path, name]
    return group.make_context(" ".join(path), list(args))


# Built on other branches at the time of writing; once merged their flags are checked too.
NOT_YET_MERGED = frozenset({"serve", "dashboard"})


def _has_tmc_command(name: str) -> bool:
    from tmc.cli import app

    group = typer.main.get_command(app)
    return isinstance(group, click.Group) and name in group.list_commands(click.Context(group))


@pytest.mark.parametrize("service", tmc_services())
def test_tmc_flags_parse(service: str) -> None:
    program = command(service)[1]
    if program in NOT_YET_MERGED and not _has_tmc_command(program):
        pytest.skip(f"`tmc {program}` is not in this build yet")
    try:
        context = _tmc_context(command(service)[1:])
    except click.UsageError as exc:
        pytest.fail(f"{service}: {exc.format_message()}")
    if command(service)[1:3] == ["silo", "start"]:
        fields = set(SiloStart.model_fields)
        SiloStart(**{k: v for k, v in context.params.items() if k in fields})


def _options(name: str) -> dict[str, str | None]:
    program = command(name)[0]
    if program in FLOWER:
        return dict(split_args(command(name)[1:], flower_flags(program)))
    return {a.partition("=")[0]: a.partition("=")[2] or None for a in command(name)[3:]}


def test_superlink_is_secured() -> None:
    [superlink] = [n for n in flower_services() if command(n)[0] == "flower-superlink"]
    options = _options(superlink)
    assert "--insecure" not in options
    for flag in ("--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--database"):
        assert options.get(flag), flag
    assert "--enable-supernode-auth" in options
    assert "--disable-runtime-dependency-installation" in options
    assert options.get("--isolation") == "process"  # the ServerApp runs in superexec


def test_everyone_points_at_the_superlink_port() -> None:
    [superlink] = [n for n in flower_services() if command(n)[0] == "flower-superlink"]
    address = f"{superlink}:{_options(superlink)['--port']}"
    [executor] = [n for n in flower_services() if command(n)[0] == "flower-superexec"]
    assert _options(executor)["--runtime-api-address"] == address
    assert _options(executor).get("--superexec-auth-secret-file")
    silos = [n for n in tmc_services() if command(n)[1:3] == ["silo", "start"]]
    assert len([s for s in silos if not services()[s].get("profiles")]) >= 3
    for silo in silos:
        options = _options(silo)
        assert options["--superlink"] == address, silo
        assert "--insecure" not in options
        assert options.get("--auth-key"), silo
        assert options.get("--root-certificates"), silo


def test_each_silo_mounts_its_own_data_and_the_registry_is_a_volume() -> None:
    silos = [n for n in tmc_services() if command(n)[1:3] == ["silo", "start"]]
    data = [m for s in silos for m in mounts(s) if m.target == "/data"]
    assert len(data) == len({m.source for m in data}) == len(silos)
    assert all(m.read_only and not m.named_volume for m in data)
    assert {_options(n)["--silo"] for n in silos} == set(silos)
    registry = [m for n in services() for m in mounts(n) if m.source == "registry"]
    assert registry
    assert all(m.named_volume and not m.read_only for m in registry)
    # every named volume a service mounts is declared
    named = {m.source for n in services() for m in mounts(n) if m.named_volume}
    assert named <= set(compose()["volumes"])


def test_a_gpu_silo_reserves_a_gpu() -> None:
    gpu = [
        spec
        for spec in services().values()
        if spec.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    ]
    assert gpu, "no silo reserves a GPU"
    for spec in gpu:
        [device] = spec["deploy"]["resources"]["reservations"]["devices"]
        assert "gpu" in device["capabilities"]
        assert spec.get("profiles"), "GPU silos are opt-in (a profile)"


def test_the_checks_catch_drift() -> None:
    flags = flower_flags("flower-supernode")
    with pytest.raises(AssertionError, match="not an option"):
        list(split_args(["--fleet-api-address", "superlink:9092"], flags))
    with pytest.raises(AssertionError, match="needs a value"):
        list(split_args(["--superlink"], flags))
    with pytest.raises(AssertionError, match="takes no value"):
        list(split_args(["--insecure=yes"], flags))
    with pytest.raises(click.UsageError):
        _tmc_context(["silo", "start", "--superlink=superlink:8000", "--no-such-flag"])


def test_containers_run_as_an_explicit_uid() -> None:
    """No default uid: the keys are the host user's 0600 files (issue: 10001 could not
    read them), so an unset TMC_UID must stop compose with a message."""
    for name, spec in services().items():
        uid, gid = split_fields(spec["user"])
        assert (required_variable(uid), required_variable(gid)) == ("TMC_UID", "TMC_GID"), name


def test_health_checks_ask_the_process() -> None:
    silos = [n for n in tmc_services() if command(n)[1:3] == ["silo", "start"]]
    assert silos
    for name in ("superlink", "superexec-serverapp", *silos):
        spec = services()[name]
        address = _options(name)["--health-server-address"]
        assert address is not None
        assert address.startswith("127.0.0.1:"), "plain-text health server: loopback only"
        check = spec["healthcheck"]
        assert check["test"] == ["CMD", "tmc-healthcheck", address], name
        assert check.get("start_period"), f"{name}: a start period (startup is slow)"


def test_restarts_are_bounded_and_init_reaps() -> None:
    for name, spec in services().items():
        policy = spec["restart"]
        assert re.fullmatch(r"on-failure:\d", policy), f"{name}: {policy}"
        assert spec.get("init") is True, f"{name}: spawns processes, needs an init"


def test_ports_are_published_on_loopback_by_default() -> None:
    for name, spec in services().items():
        for port in spec.get("ports", []):
            published, container = split_fields(port)
            assert published.startswith("${TMC_"), f"{name}: {port} can be set per deployment"
            address, host_port = split_fields(with_defaults(published))
            assert address == "127.0.0.1", f"{name}: {port} must default to loopback"
            assert host_port.isdigit(), f"{name}: {port}"
            assert container.isdigit(), f"{name}: {port}"


def test_least_privilege_mounts() -> None:
    """The ServerApp executor gets the CA and the SuperExec secret, never the SuperLink's
    TLS key; a silo gets its CA and its node key; data is read-only; the registry volume is
    mounted above the registry folder so that the process creates (and owns) the folder."""
    host = {n: [m for m in mounts(n) if not m.named_volume] for n in services()}
    executor = [m.target for m in host["superexec-serverapp"]]
    assert executor == ["/credentials/ca.crt", "/credentials/superexec.secret"]
    assert not any("server.key" in m.source for m in host["superexec-serverapp"])
    for silo in (n for n in tmc_services() if command(n)[1:3] == ["silo", "start"]):
        files = sorted(m.target for m in host[silo] if m.target.startswith("/credentials"))
        assert files == ["/credentials/ca.crt", "/credentials/node.key"], silo
        assert all(m.read_only for m in host[silo]), silo
    for name in ("superexec-serverapp", "admin"):
        assert Mount("registry", "/var/lib/tmc", read_only=False) in mounts(name), name


def _flags(name: str) -> dict[str, str | None]:
    """``--flag=value`` options of a ``tmc COMMAND`` service (one word: serve, dashboard)."""
    return {a.partition("=")[0]: a.partition("=")[2] or None for a in command(name)[2:]}


def test_admin_serve_and_dashboard_have_health_checks_that_ask_the_process() -> None:
    admin = services()["admin"]["healthcheck"]
    options = _options("admin")
    assert admin["test"] == [
        "CMD",
        "tmc-healthcheck",
        "--tls-ca",
        "/credentials/ca.crt",
        f"127.0.0.1:{options['--port']}",
    ]
    assert options["--metrics-port"]
    assert options["--metrics-host"] == "0.0.0.0"
    for name in ("serve", "dashboard"):
        spec, port = services()[name], _flags(name)["--port"]
        assert spec["healthcheck"]["test"] == [
            "CMD",
            "tmc-healthcheck",
            "--tls-ca",
            "/credentials/ca.crt",
            "--http",
            f"https://127.0.0.1:{port}/healthz",
        ], name
        # beyond the container's loopback, both answer over TLS only
        assert _flags(name)["--tls-cert"] == "/credentials/server.pem", name
        assert _flags(name)["--tls-key"] == "/credentials/server.key", name
        assert spec["healthcheck"].get("start_period"), name
        assert [p.rsplit(":", 1)[1] for p in spec["ports"]] == [port], name
        assert _flags(name)["--registry"] == "/var/lib/tmc/registry", name
        assert _flags(name)["--host"] == "0.0.0.0", name


def test_serve_and_dashboard_read_the_admin_credentials_read_only() -> None:
    for name, option in (("serve", "--credentials"), ("dashboard", "--token-file")):
        volumes = services()[name]["volumes"]
        secrets = [v for v in volumes if v.startswith("$")]
        assert secrets == ["${TMC_CREDENTIALS:-./deploy/credentials}/admin:/credentials:ro"], name
        assert _flags(name)[option] == "/credentials/credentials.json", name
        # SQLite's WAL needs its -shm file beside the database, even to read
        assert "registry:/var/lib/tmc" in volumes, name


def test_every_service_passes_the_log_settings_on() -> None:
    for name, spec in services().items():
        environment = spec["environment"]
        assert environment["TMC_LOG_FORMAT"] == "${TMC_LOG_FORMAT:-text}", name
        assert environment["TMC_LOG_LEVEL"].startswith("${TMC_LOG_LEVEL:-"), name
