"""A second process that holds a registry's run lock (for the one-run-per-registry tests)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLDER = """
import sys, time
from tmc.server.registry import run_lock
with run_lock(sys.argv[1], command="tmc simulate --registry first"):
    print("held", flush=True)
    time.sleep(600)
"""


@contextmanager
def holder_process(root: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process holding ``root``'s run lock; killed (SIGKILL) at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)
