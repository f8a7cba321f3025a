"""The README stays a short front page: the two set-up commands first, at most 200 lines,
and every page it links to exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_readme_starts_with_the_two_setup_commands() -> None:
    head = README.read_text().splitlines()[:8]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"the README has {len(lines)} lines; move detail into docs/"


def test_every_file_the_readme_links_to_exists() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if "://" not in t]
    assert local, "the README should link into the documentation"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"the README links to missing files: {missing}"


def test_pyproject_run_config_matches_the_code_defaults() -> None:
    import tomllib

    from tmc.common.federation.config import FederationConfig

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = pyproject["tool"]["flwr"]["app"]["config"]
    assert declared == FederationConfig().to_run_config()
