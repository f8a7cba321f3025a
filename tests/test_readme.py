"""The README's code examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README should show code that runs"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})


def test_readme_starts_with_the_two_setup_commands() -> None:
    head = README.read_text().splitlines()[:8]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_readme_documents_every_run_config_key() -> None:
    from tmc.common.federation.config import FederationConfig

    text = README.read_text()
    for key in FederationConfig().to_run_config():
        assert f"| `{key}` |" in text, f"README does not document run config key {key}"


def test_pyproject_run_config_matches_the_code_defaults() -> None:
    import tomllib

    from tmc.common.federation.config import FederationConfig

    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text())
    declared = pyproject["tool"]["flwr"]["app"]["config"]
    assert declared == FederationConfig().to_run_config()
