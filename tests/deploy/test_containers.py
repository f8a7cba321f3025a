"""The compose stack in containers, end to end: ``deploy/container-test.sh`` (podman;
root; ~20-40 min on 2 cores, most of it building the images). Not in the default run
(``-m 'not containers'`` in pyproject's addopts):

    sudo .venv/bin/python -m pytest -m containers tests/deploy/test_containers.py -s

Options of the script come from the environment (``TMC_CA_BUNDLE``, ``TMC_SERVE_INDEX``,
``TMC_TORCH_INDEX_URL``, ... : ``deploy/container-test.sh --help``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "container-test.sh"
LIMIT = 3 * 3600  # seconds: a first build downloads and commits several GB


@pytest.mark.containers
@pytest.mark.timeout(LIMIT + 120)
def test_compose_stack_in_containers() -> None:
    if os.geteuid() != 0:
        pytest.skip("the container test runs rootful podman: run pytest as root")
    if shutil.which("apt-get") is None and shutil.which("podman") is None:
        pytest.skip("neither podman nor apt-get (to install it) is available")
    env = {**os.environ, "TMC_VENV": str(Path(sys.executable).parent.parent)}
    # A session of its own, so that a timeout can stop the script and all it started; the
    # script's own trap then removes its containers and volumes.
    process = subprocess.Popen(["bash", str(SCRIPT)], cwd=REPO, env=env, start_new_session=True)
    try:
        status = process.wait(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        pytest.fail(f"{SCRIPT.name} ran past {LIMIT} s and was stopped")
    assert status == 0, f"{SCRIPT.name} failed with status {status} (its output is above)"
