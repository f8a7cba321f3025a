"""The documentation site's pages say what the code does: the run-config page documents
every key with the code's default, the Python examples run, no page suggests killing
processes by name, and every design note a source comment points to exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RUN_CONFIG_PAGE = DOCS / "run-config.md"
EXAMPLES = (DOCS / "concepts.md",)
SOURCE_FOLDERS = ("common", "client", "server", "simulation", "cli", "bench", "tests", "deploy")


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)


def _toml_default(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def test_the_run_config_page_documents_every_key_with_its_default() -> None:
    from tmc.common.federation.config import FederationConfig

    rows = dict(re.findall(r"^\| `([a-z-]+)` \| `([^`]*)` \|", RUN_CONFIG_PAGE.read_text(), re.M))
    defaults = FederationConfig().to_run_config()
    assert rows.keys() == defaults.keys(), (
        f"undocumented: {sorted(defaults.keys() - rows.keys())}; "
        f"documented but not in the config: {sorted(rows.keys() - defaults.keys())}"
    )
    wrong = {k: (rows[k], _toml_default(v)) for k, v in defaults.items()}
    wrong = {k: pair for k, pair in wrong.items() if pair[0] != pair[1]}
    assert not wrong, f"documented default differs from the code (page, code): {wrong}"


def test_the_python_examples_run() -> None:
    for page in EXAMPLES:
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
        assert blocks, f"{page.name} should show code that runs"
        for block in blocks:
            exec(compile(block, str(page), "exec"), {"__name__": "docs_example"})


def test_no_page_stops_processes_by_name() -> None:
    pages = [*_pages(), REPO / "README.md"]
    offenders = [p.name for p in pages if re.search(r"\b(pkill|killall)\b", p.read_text())]
    assert not offenders, f"stop processes by job or pid, not by name: {offenders}"


def test_every_design_note_the_code_cites_exists() -> None:
    cited: dict[str, list[str]] = {}
    for folder in SOURCE_FOLDERS:
        for source in (REPO / folder).rglob("*.py"):
            for note in re.findall(r"([\w/.-]*notes/[\w-]+\.md)", source.read_text()):
                cited.setdefault(note, []).append(str(source.relative_to(REPO)))
    assert cited, "the code should point to its design notes"
    missing = {note: where for note, where in cited.items() if not (REPO / note).is_file()}
    assert not missing, f"comments point to notes that are not in the repository: {missing}"


def test_bare_note_names_are_not_cited() -> None:
    bare = re.compile(r"(?<![/\w])(method|flower|benchmarks|architecture)\.md")
    offenders = [
        str(source.relative_to(REPO))
        for folder in SOURCE_FOLDERS
        for source in (REPO / folder).rglob("*.py")
        if bare.search(source.read_text())
    ]
    assert not offenders, f"cite a design note by its path under docs/notes/: {offenders}"
