"""Error paths a new user hits with the model and registry commands: each is refused in
one line that says what is wrong, before anything is done or audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.registries import digits_registry
from tmc.cli import app
from tmc.common.errors import ConfigError
from tmc.common.models import MaterializedBase
from tmc.server.registry import Registry
from tmc.server.registry.sqlite import DB_FILENAME

runner = CliRunner()


def _refused(*args: str) -> str:
    """The one line a refused command writes on stderr (exit 2, nothing on stdout)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def registry(tmp_path: Path, digits_base: MaterializedBase) -> Path:
    return digits_registry(tmp_path / "registry", digits_base, rounds=2)


def _exports(root: Path) -> int:
    with Registry.open(root, actor="test") as opened:
        return sum(event.action == "export" for event in opened.audit_log())


def test_export_to_a_folder_is_refused_before_it_is_audited(registry: Path, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    before = _exports(registry)
    assert "is a folder" in _refused("export", "--registry", str(registry), "--out", str(folder))
    assert "is a folder" in _refused(
        "export", "--registry", str(registry), "--out", str(folder), "--delta-only"
    )
    assert "is a folder" in _refused("compose", "--registry", str(registry), "--out", str(folder))
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in _refused(
        "export", "--registry", str(registry), "--out", str(tmp_path / "file" / "model.st")
    )
    with (
        Registry.open(registry, actor="test") as opened,
        pytest.raises(ConfigError, match="is a folder"),
    ):
        opened.export_model(folder)
    assert _exports(registry) == before
    assert list(folder.iterdir()) == []


def test_a_purged_version_cannot_be_loaded_for_predict_or_evaluate(
    registry: Path, tmp_path: Path
) -> None:
    with Registry.open(registry, actor="test") as opened:
        opened.forget(silo="silo-0", actor="test", reason="asked")
    image = tmp_path / "digit.png"
    Image.new("L", (8, 8), 128).save(image)
    message = _refused("predict", "--registry", str(registry), str(image), "--version", "1")
    assert "version 1 cannot be loaded" in message
    assert "exported" not in message
    assert "cannot be loaded" in _refused("evaluate", "--registry", str(registry), "--version", "2")


def test_a_garbage_registry_database_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "garbage"
    root.mkdir()
    (root / DB_FILENAME).write_bytes(b"this is not SQLite at all, " * 200)
    message = _refused("registry", "status", "--registry", str(root))
    assert "not a registry database" in message
    assert str(root / DB_FILENAME) in message


def test_evaluate_reads_an_image_folder_at_the_federations_size(
    registry: Path, tmp_path: Path
) -> None:
    """The digits federation takes 1×8×8 inputs; the folder's images are 32×32 RGB."""
    for digit in ("3", "7"):
        (tmp_path / "folder" / "test" / digit).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(
                tmp_path / "folder" / "test" / digit / f"{i}.png"
            )
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--registry",
            str(registry),
            "--dataset",
            "imagefolder",
            "--dataset-root",
            str(tmp_path / "folder"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["num_examples"] == 4
    assert set(scores["per_class"]) == {"3", "7"}
