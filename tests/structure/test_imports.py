"""The dependency direction, read from the source: ``server`` and ``client`` import only
``common``, ``common`` neither, nothing in the product imports ``bench``, and no module
takes part in an import cycle, counting the imports inside functions too (a function-local
import only hides a cycle, it does not break it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The folders installed as tmc.<folder> (setup.py's FOLDERS).
FOLDERS = ("common", "client", "server", "simulation", "cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["tmc", *parts])


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "_generated" not in path.parts
    }


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, anywhere in its body, as absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # `from pkg import sub` imports the submodule when there is one.
            subs = {f"{target}.{alias.name}" for alias in node.names}
            found.update(subs & MODULES.keys() or {target})
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _offenders(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name == prefix or name.startswith(f"{prefix}.")
        for target in targets
        if any(target == f or target.startswith(f"{f}.") for f in forbidden)
    )


def test_the_walk_sees_the_packages() -> None:
    # A walk that found nothing would pass every check below.
    for folder in ("common", "client", "server"):
        assert sum(n.startswith(f"tmc.{folder}.") for n in MODULES) >= 5, folder
    assert "tmc.common.schema" in GRAPH["tmc.common.federation.config"]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("tmc.server", ("tmc.client", "tmc.simulation", "tmc.cli")),
        ("tmc.client", ("tmc.server", "tmc.simulation", "tmc.cli")),
        ("tmc.common", ("tmc.server", "tmc.client", "tmc.simulation", "tmc.cli")),
    ],
)
def test_dependency_direction(package: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(package, forbidden) == []


def test_the_product_does_not_import_bench() -> None:
    assert _offenders("tmc", ("bench",)) == []


def _cycle_from(start: str) -> list[str] | None:
    """A shortest import path from ``start`` back to itself, if there is one."""
    frontier = [[start]]
    seen = {start}
    while frontier:
        following: list[list[str]] = []
        for path in frontier:
            for target in sorted(GRAPH.get(path[-1], ())):
                if target == start:
                    return [*path, start]
                if target in GRAPH and target not in seen:
                    seen.add(target)
                    following.append([*path, target])
        frontier = following
    return None


def test_no_import_cycle() -> None:
    cycles = {" -> ".join(c) for name in GRAPH if (c := _cycle_from(name)) is not None}
    assert sorted(cycles) == []


def test_the_cycle_check_finds_a_function_local_cycle(tmp_path: Path) -> None:
    # The check must see an import inside a function, the way the old cycles were hidden.
    (tmp_path / "a.py").write_text("def f():\n    from tmc.common.x_b import g\n")
    tree_imports = _imports("tmc.common.x_a", tmp_path / "a.py")
    assert tree_imports == {"tmc.common.x_b"}


def test_tests_share_helpers_not_conftest_or_test_modules() -> None:
    # Importing a conftest or a test module runs its fixtures' and tests' module code twice
    # under two names; what tests share lives in helper modules.
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                last = name.rpartition(".")[2]
                if name.startswith("tests.") and (last == "conftest" or last.startswith("test_")):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []
