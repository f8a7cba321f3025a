"""tests/processes.py: stopping a process also stops what it spawned, even in other sessions."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.processes import ProcessError, Processes, children, free_port, tagged, wait_until

# A parent that starts a grandchild in a session of its own (as flower-superlink starts its
# SuperExec), then ignores SIGTERM.
SPAWNER = """
import signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""


def test_stop_all_ends_detached_grandchildren(tmp_path: Path) -> None:
    group = Processes(log_dir=tmp_path)
    parent = group.start("spawner", [sys.executable, "-c", SPAWNER])
    wait_until(lambda: "ready" in parent.log.read_text(), timeout=30, what="spawner ready")
    wait_until(lambda: len(tagged(group.tag)) == 2, timeout=30, what="two tagged processes")
    assert group.stop_all(grace=1.0) == []
    assert not parent.alive()
    assert not children(os.getpid())


def test_run_reports_failures_with_the_log(tmp_path: Path) -> None:
    with Processes(log_dir=tmp_path) as group:
        status, output = group.run("ok", [sys.executable, "-c", "print('hi')"], timeout=30)
        assert (status, output.strip()) == (0, "hi")
        with pytest.raises(ProcessError, match="boom"):
            group.run("bad", [sys.executable, "-c", "raise SystemExit('boom')"], timeout=30)
        with pytest.raises(ProcessError, match="ran past"):
            group.run("slow", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    assert tagged(group.tag) == []


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
