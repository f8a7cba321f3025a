"""Every table command stays readable on an 80-column terminal: no line is wider than 80
columns, and every id, date, silo name and class appears whole on one line. The commands
run as a user runs them, in a process of their own with COLUMNS=80 (the session's cache
of the digits base is inherited through the environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.registries import digits_registry
from tmc.common.models import MaterializedBase
from tmc.server.registry import Registry

WIDTH = 80
LONG_SILO = "hospital-northwest"
TMC = Path(sys.executable).with_name("tmc")
pytestmark = pytest.mark.slow


def _tmc(*args: str) -> str:
    done = subprocess.run(
        [str(TMC), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": str(WIDTH)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _check(output: str, whole: list[str]) -> None:
    lines = output.splitlines()
    wide = [line for line in lines if len(line.rstrip()) > WIDTH]
    assert not wide, f"lines wider than {WIDTH} columns:\n" + "\n".join(wide)
    broken = [value for value in whole if not any(value in line for line in lines)]
    assert not broken, f"broken across lines or missing: {broken}\n{output}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, digits_base: MaterializedBase) -> Path:
    silos = (("silo-0", (0, 1, 2)), (LONG_SILO, (3, 4, 5, 6)), ("silo-2", (7, 8, 9)))
    root = tmp_path_factory.mktemp("narrow") / "registry"
    digits_registry(root, digits_base, silos=silos, rounds=2)
    with Registry.open(root, actor="test") as opened:
        opened.forget(silo="silo-2", actor="operator", reason="withdrew consent")
    return root


def test_registry_list_keeps_ids_and_silos_whole(registry: Path) -> None:
    records = json.loads(_tmc("registry", "list", "--registry", str(registry), "--json"))
    assert records
    for status in ("active", "all"):
        output = _tmc("registry", "list", "--registry", str(registry), "--status", status)
        _check(output, [r["id"][:12] + "…" for r in records] + [LONG_SILO])


def test_registry_versions_keeps_dates_and_silos_whole(registry: Path) -> None:
    rows = json.loads(_tmc("registry", "versions", "--registry", str(registry), "--json"))
    output = _tmc("registry", "versions", "--registry", str(registry))
    _check(output, ["current", LONG_SILO] + [r["created_at"][:10] for r in rows])


@pytest.mark.parametrize("command", ["history", "status", "audit"])
def test_other_registry_tables_fit(registry: Path, command: str) -> None:
    output = _tmc("registry", command, "--registry", str(registry))
    _check(output, [] if command == "history" else [LONG_SILO])


def test_predict_keeps_classes_and_scores_whole(registry: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch.npy"
    np.save(batch, np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    answer = json.loads(_tmc("predict", "--registry", str(registry), str(batch), "--json"))
    output = _tmc("predict", "--registry", str(registry), str(batch))
    tops = [f"{t['class']}: {t['score']:.2f}" for p in answer["predictions"] for t in p["top"]]
    _check(output, tops)
