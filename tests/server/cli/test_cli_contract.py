"""The ``tmc`` command-line contract scripts rely on: names, flags and JSON shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.helpers import random_delta
from tmc.cli import app
from tmc.common.components import Component, ComponentMeta, Delta
from tmc.common.data import DatasetSpec
from tmc.common.data.dataset_inputs import dataset_data_spec
from tmc.common.models import MaterializedBase
from tmc.server.registry import BaseRecord, Registry

runner = CliRunner()


@pytest.fixture
def registry(tmp_path: Path, digits_base: MaterializedBase) -> Path:
    root = tmp_path / "registry"
    with Registry.create(
        root,
        base=BaseRecord.from_materialized(digits_base),
        theta0=digits_base.theta0(),
        data=dataset_data_spec(DatasetSpec(name="digits")),
    ) as opened:
        for index, silo in enumerate(["silo-0", "silo-0", "silo-1", "silo-2"]):
            delta = Delta(random_delta(digits_base, seed=index, scale=0.01))
            meta = ComponentMeta(
                base_sha256=digits_base.sha256,
                silo=silo,
                round=1,
                increment=index,
                num_examples=20 + index,
            )
            opened.add(Component(delta, meta))
        opened.commit_version(round=1, reason="test")
    return root


def _json(args: list[str]) -> object:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_registry_list_json_shape(registry: Path) -> None:
    rows = _json(["registry", "list", "--registry", str(registry), "--json"])
    assert isinstance(rows, list)
    assert len(rows) == 4
    assert {"id", "silo", "round", "num_examples", "status", "sha256"} <= set(rows[0])
    assert {r["silo"] for r in rows} == {"silo-0", "silo-1", "silo-2"}


def test_verify_exit_status(registry: Path) -> None:
    assert runner.invoke(app, ["registry", "verify", "--registry", str(registry)]).exit_code == 0
    blob = next((registry / "blobs").rglob("*.safetensors"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = runner.invoke(app, ["registry", "verify", "--registry", str(registry), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["ok"] is False


def test_compose_without_a_silo_equals_export_after_forgetting_it(
    registry: Path, tmp_path: Path
) -> None:
    before = tmp_path / "without-silo-0.safetensors"
    _json(
        [
            "compose",
            "--registry",
            str(registry),
            "--exclude-silo",
            "silo-0",
            "--out",
            str(before),
            "--json",
        ]
    )
    forgotten = _json(["forget", "--registry", str(registry), "--silo", "silo-0", "--json"])
    assert isinstance(forgotten, dict)
    assert len(forgotten["removed"]) == 2
    after = tmp_path / "export.safetensors"
    _json(["export", "--registry", str(registry), "--delta-only", "--out", str(after), "--json"])
    assert before.read_bytes() == after.read_bytes()
    missing = runner.invoke(
        app, ["forget", "--registry", str(registry), "--silo", "nobody", "--json"]
    )
    assert missing.exit_code == 2
    assert "nobody" in json.loads(missing.stdout)["message"]


def test_evaluate_and_predict(registry: Path, tmp_path: Path) -> None:
    scores = _json(["evaluate", "--registry", str(registry), "--dataset", "digits", "--json"])
    assert isinstance(scores, dict)
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert set(scores["per_class"]) == {str(c) for c in range(10)}
    image = tmp_path / "seven.png"
    pixels = np.full((32, 32), 255, dtype=np.uint8)
    pixels[4:8, 4:28] = 0
    pixels[8:28, 20:24] = 0
    Image.fromarray(pixels).save(image)
    array = tmp_path / "batch.npy"
    np.save(array, np.zeros((3, 1, 8, 8), dtype=np.float32))
    answers = _json(["predict", "--registry", str(registry), str(image), str(array), "--json"])
    assert isinstance(answers, dict)
    assert len(answers["predictions"]) == 4
    assert all(a["class"] == str(a["label"]) for a in answers["predictions"])


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["registry", "list", "--registry", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no registry" in result.output
    assert "Traceback" not in result.output


def test_every_command_explains_itself() -> None:
    for command in (
        [],
        ["simulate"],
        ["registry"],
        ["forget"],
        ["compose"],
        ["export"],
        ["evaluate"],
        ["predict"],
        ["admin"],
        ["silo"],
        ["data"],
        ["demo"],
        ["serve"],
    ):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output
