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


@pytest.mark.parametrize("service", tmc_services())
def test_tmc_flags_parse(service: str) -> None:
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
    data = [v for s in silos for v in services()[s]["volumes"] if ":/data" in v]
    assert len(data) == len(set(data)) == len(silos)
    names = {n for n in tmc_services() if command(n)[1:3] == ["silo", "start"]}
    assert {_options(n)["--silo"] for n in names} == names
    registry = [v for s in services().values() for v in s.get("volumes", []) if "registry" in v]
    assert registry
    assert all(v.startswith("registry:") for v in registry)
    assert "registry" in compose()["volumes"]


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
        user = spec["user"]
        assert user.startswith("${TMC_UID:?"), name
        assert "${TMC_GID:?" in user, name
        assert "10001" not in user, name


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
            default = re.fullmatch(r"\$\{TMC_[A-Z_]+:-(127\.0\.0\.1:\d+)\}:\d+", port)
            assert default, f"{name}: {port} must default to a loopback address"


def test_least_privilege_mounts() -> None:
    """The ServerApp executor gets the CA and the SuperExec secret, never the SuperLink's
    TLS key; a silo gets its CA and its node key; data is read-only; the registry volume is
    mounted above the registry folder so that the process creates (and owns) the folder."""
    mounts = {n: services()[n]["volumes"] for n in services()}

    def target(volume: str) -> str:  # SOURCE:TARGET[:MODE], SOURCE may hold ${VAR:-x}
        return re.sub(r"\$\{[^}]*\}", "", volume).split(":")[1]

    executor = [target(v) for v in mounts["superexec-serverapp"] if v.startswith("$")]
    assert executor == ["/credentials/ca.crt", "/credentials/superexec.secret"]
    assert not any("server.key" in v for v in mounts["superexec-serverapp"])
    for silo in (n for n in tmc_services() if command(n)[1:3] == ["silo", "start"]):
        files = sorted(target(v) for v in mounts[silo] if "/credentials" in v)
        assert files == ["/credentials/ca.crt", "/credentials/node.key"], silo
        assert all(v.endswith(":ro") for v in mounts[silo] if v.startswith("$")), silo
    for name in ("superexec-serverapp", "admin"):
        assert "registry:/var/lib/tmc" in mounts[name], name
