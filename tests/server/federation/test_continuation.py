"""A run must fit the registry it continues: ``tmc simulate`` with another split, silo
count, base or label space is refused before anything starts, naming every difference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tmc.cli import app
from tmc.common.federation.config import FederationConfig
from tmc.server.federation import continuation_problems, recorded_increments
from tmc.server.federation.continuation import simulated_partition
from tmc.server.registry import BaseRecord, PrivacyFloor, Registry

runner = CliRunner()


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    """A registry as a 3-silo class-split digits simulation with 4 increments leaves it."""
    config = FederationConfig.from_run_config(
        {"registry": str(tmp_path / "registry"), "num-silos": 3, "increments": 4}
    )
    data = config.data_spec()
    spec = config.base_spec(data)
    base = BaseRecord(spec_json=spec.canonical_json(), sha256="0" * 64, shapes={"fc.bias": (10,)})
    with Registry.create(
        config.registry_path, base=base, max_norm=config.max_norm, data=data
    ) as registry:
        registry.check_partition(simulated_partition(config), silo="silo-0", actor="server")
    return config.registry_path


def _config(registry_dir: Path, **values: object) -> FederationConfig:
    return FederationConfig.from_run_config(
        {"registry": str(registry_dir), "num-silos": 3, "increments": 4, **values}
    )


def test_the_same_settings_continue(registry_dir: Path) -> None:
    config = _config(registry_dir)
    assert continuation_problems(config, config.data_spec()) == []
    assert recorded_increments(config) == 4


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"split": "iid"}, ["split: 'class' vs 'iid'"]),
        ({"num-silos": 4}, ["num-silos: 3 vs 4"]),
        ({"increments": 2}, ["num-increments: 4 vs 2"]),
        ({"seed": 1}, ["seed: 0 vs 1"]),
        ({"weighting": "num-examples"}, ["weighting: 'uniform' vs 'num-examples'"]),
    ],
)
def test_what_differs_is_named(
    registry_dir: Path, values: dict[str, object], expected: list[str]
) -> None:
    config = _config(registry_dir, **values)
    problems = continuation_problems(config, config.data_spec())
    assert all(e in problems for e in expected), problems


def test_another_base_is_named(registry_dir: Path) -> None:
    config = _config(registry_dir, **{"base-weights": "init", "tangent": "last-stage"})
    problems = continuation_problems(config, config.data_spec())
    assert "base tangent: 'full' vs 'last-stage'" in problems
    assert "base weights.kind: 'pretrained' vs 'init'" in problems


def test_simulate_refuses_before_starting(registry_dir: Path) -> None:
    result = runner.invoke(
        app, ["simulate", "--registry", str(registry_dir), "--silos", "3", "--split", "iid"]
    )
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith(f"error: the registry at {registry_dir} was made with other settings")
    assert "split: 'class' vs 'iid'" in line
    assert "\n" not in line

    as_json = runner.invoke(
        app, ["simulate", "--registry", str(registry_dir), "--silos", "5", "--json"]
    )
    assert as_json.exit_code == 2
    error = json.loads(as_json.stdout)
    assert error["error"] == "RegistryMismatchError"
    assert "num-silos: 3 vs 5" in error["message"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_simulate_on_cuda_without_cuda_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["simulate", "--registry", str(tmp_path / "r"), "--client-device", "cuda"]
    )
    assert result.exit_code == 2
    assert "CUDA is not available" in result.stderr
    assert not (tmp_path / "r").exists(), "refused before anything was created"


def test_public_fraction_zero_is_honoured_or_refused(tmp_path: Path) -> None:
    pretrained = FederationConfig.from_run_config({"public-fraction": 0.0})
    with pytest.raises(ValueError, match="public-fraction is 0"):
        pretrained.base_spec()
    init = FederationConfig.from_run_config({"public-fraction": 0.0, "base-weights": "init"})
    assert init.partition_spec().public_fraction == 0.0
    assert init.base_spec().weights.kind == "init"


def test_a_private_registry_is_continued_only_as_privately(tmp_path: Path) -> None:
    private = _config(tmp_path / "private", **{"dp-epsilon": 3.0})
    data = private.data_spec()
    spec = private.base_spec(data)
    base = BaseRecord(spec_json=spec.canonical_json(), sha256="0" * 64, shapes={"fc.bias": (10,)})
    floor = PrivacyFloor.of(private.privacy_config())
    with Registry.create(
        private.registry_path, base=base, max_norm=private.max_norm, data=data, privacy=floor
    ):
        pass
    root = private.registry_path
    assert continuation_problems(_config(root, **{"dp-epsilon": 2.0}), data) == []
    assert continuation_problems(_config(root), data) == [
        "privacy: DP-SGD with ε ≤ 3, δ ≤ 1e-05 required, no DP settings"
    ]
    assert continuation_problems(_config(root, **{"dp-epsilon": 8.0}), data) == [
        "privacy: DP-SGD with ε ≤ 3, δ ≤ 1e-05 required, dp-epsilon 8 vs at most 3"
    ]
