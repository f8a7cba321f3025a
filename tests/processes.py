"""Start, watch and stop real processes in tests (import as ``tests.processes``).

Flower's SuperLink and SuperNode spawn helpers (``flower-superexec``, ``flwr-serverapp``,
``flwr-clientapp``), some in sessions of their own, that outlive their parent. So every
process started here runs in a new session, carries a tag in its environment (inherited by
everything it spawns), and :meth:`Processes.stop_all` ends the groups, then anything still
carrying the tag. :func:`tagged` finds leftovers for the final assertion.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

TAG_ENV = "TMC_TEST_PROCESS_TAG"
T = TypeVar("T")


class ProcessError(RuntimeError):
    """A managed process died, or a wait timed out; the message carries its log's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Managed:
    """One started process: its Popen, its log file and its name in messages."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"{self.name} (pid {self.pid}, {state}); last lines of {self.log}:\n{self.tail()}"


def _read_environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or a zombie
        return b""


def tagged(tag: str) -> list[int]:
    """Pids of live processes whose environment carries ``tag`` (zombies excluded)."""
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        pid = int(entry.name) if entry.name.isdigit() else os.getpid()
        if pid != os.getpid() and needle in _read_environ(pid).split(b"\0"):
            found.append(pid)
    return found


def children(pid: int) -> list[int]:
    """Live (non-zombie) direct children of ``pid``."""
    result = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            result.append(int(entry.name))
    return result


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    watch: Sequence[Managed] = (),
    interval: float = 0.25,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail early when a watched
    process dies, and with its log when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for process in watch:
            if not process.alive():
                raise ProcessError(f"while waiting for {what}: {process.describe()}")
        if time.monotonic() > deadline:
            logs = "\n".join(p.describe() for p in watch)
            raise ProcessError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(interval)


def wait_for_port(
    host: str, port: int, *, timeout: float = 30.0, watch: Sequence[Managed] = ()
) -> None:
    wait_until(lambda: port_open(host, port), timeout=timeout, what=f"{host}:{port}", watch=watch)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


@dataclass
class Processes:
    """The processes of one test: started with a tag, stopped together (use as a context
    manager or call :meth:`stop_all` in a ``finally``)."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: list[Managed] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Managed:
        """Start ``argv`` in a new session, output to ``log_dir/NAME.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        full_env = {**self.env, **(env or {}), TAG_ENV: self.tag}
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        process = Managed(name, popen, log)
        self.started.append(process)
        return process

    def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        check: bool = True,
    ) -> tuple[int, str]:
        """Run ``argv`` to completion (stopped with its group on timeout): (status, output)."""
        process = self.start(name, argv, env=env, cwd=cwd)
        try:
            process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop(process)
            raise ProcessError(f"{name} ran past {timeout:.0f} s: {process.describe()}") from exc
        output = process.log.read_text(errors="replace")
        if check and process.popen.returncode != 0:
            raise ProcessError(f"{name} failed: {process.describe()}")
        return process.popen.returncode, output

    def stop(self, process: Managed, *, grace: float = 10.0) -> None:
        """SIGTERM the process's group, wait up to ``grace`` s, then SIGKILL the group."""
        if process.alive():
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=grace)
        _signal_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL does not fail
            process.popen.wait(timeout=5)

    def stop_all(self, *, grace: float = 10.0) -> list[int]:
        """Stop every started process: SIGTERM all groups (last started first), wait up to
        ``grace`` s, SIGKILL the groups, then end whatever still carries the tag. Returns
        the pids that survived all that (none, normally)."""
        for process in reversed(self.started):
            if process.alive():
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in reversed(self.started):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        for process in reversed(self.started):
            self.stop(process, grace=0)
        leftovers = tagged(self.tag)
        for pid in leftovers:
            _signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.2)
            leftovers = tagged(self.tag)
        for pid in leftovers:
            _signal_pid(pid, signal.SIGKILL)
        if leftovers:
            time.sleep(0.5)
        return tagged(self.tag)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
