"""The images install every folder the package is made of: a folder missing from the
Dockerfile's COPY lines or from its .dockerignore builds an image whose ``tmc`` command
cannot start (tmc.cli and tmc.simulation were once left out)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def package_folders() -> tuple[str, ...]:
    """setup.py's FOLDERS, read without running setup.py."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "FOLDERS" for t in node.targets
        ):
            folders = ast.literal_eval(node.value)
            assert isinstance(folders, tuple)
            return folders
    raise AssertionError("setup.py defines no FOLDERS")


def test_the_folders_are_read() -> None:
    assert {"common", "client", "server", "cli", "simulation"} <= set(package_folders())


def test_the_image_copies_every_package_folder() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\S+) /src/\1$", dockerfile, flags=re.MULTILINE))
    assert set(package_folders()) <= copied


def test_the_build_context_sends_every_package_folder() -> None:
    lines = (REPO / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert "*" in lines  # everything is excluded, then the folders are let in
    for folder in package_folders():
        assert f"!{folder}/**" in lines, folder
