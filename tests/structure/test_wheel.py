"""The wheel installs one top-level name, ``tmc``: another package that ships a generic
``common/`` (as many do) installs beside it, and both import. Builds the wheel from a copy
of the sources with this environment's build tools (no download), then installs it into a
fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "common", "client", "server", "cli")
SOURCES += ("simulation",)

pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    argv = [str(a) for a in args]
    # A fresh environment means no inherited search path: Ray's driver (run in-process by
    # earlier tests) exports PYTHONPATH with this checkout and its site-packages, through
    # which pip would see tmc-federation installed already and skip the wheel.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, cwd=cwd, check=False, env=env
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wheel(source: Path, out: Path) -> Path:
    # No build isolation: the build requirements are installed here, and tests download
    # nothing.
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", out, source)  # fmt: skip
    [wheel] = out.glob("*.whl")
    return wheel


def _copy_sources(target: Path) -> Path:
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "_generated", "build")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return target


def _other_common(target: Path) -> Path:
    """A tiny unrelated package whose top-level package is ``common``."""
    (target / "common").mkdir(parents=True)
    (target / "common" / "__init__.py").write_text('WHO = "someone else\'s common"\n')
    (target / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "someone-elses-common"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["common"]\n'
    )
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    return _wheel(_copy_sources(base / "src"), base / "dist")


def test_the_wheel_has_one_top_level_name(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [top_level] = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["tmc"]
    packaged = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packaged == {"tmc"}
    # the generated admin API is built into the wheel, not left behind
    assert "tmc/server/admin/_generated/admin_pb2.py" in names


def test_a_fresh_environment_imports_both(wheel: Path, tmp_path: Path) -> None:
    other = _wheel(_other_common(tmp_path / "other"), tmp_path / "other-dist")
    env = tmp_path / "env"
    _run(sys.executable, "-m", "venv", "--without-pip", env)
    python = env / "bin" / "python"
    fresh = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    )
    # The dependencies (torch, flwr, ...) come from this environment's site-packages, added
    # as a plain path: its .pth files (the editable install of tmc among them) do not run.
    (fresh / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
         "--no-index", "-q", wheel, other)  # fmt: skip
    check = (
        "import common, tmc.common, tmc.common.federation.config, tmc.server, tmc.client, "
        "tmc.cli; "
        "print(common.WHO); print(tmc.common.__file__); print(tmc.cli.__file__)"
    )
    who, tmc_common, tmc_cli = _run(python, "-c", check, cwd=tmp_path).splitlines()
    assert who == "someone else's common"
    for path in (tmc_common, tmc_cli):
        assert Path(path).is_relative_to(fresh / "tmc"), path
    assert "Usage" in _run(env / "bin" / "tmc", "--help", cwd=tmp_path)
