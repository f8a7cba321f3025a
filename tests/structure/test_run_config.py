"""One declaration per run-config key: ``FederationConfig``'s. Every other place that holds a
key's default (pyproject's ``[tool.flwr.app.config]``, the training and DP settings, the
options of ``tmc simulate`` and ``tmc demo``) agrees with it, and every key can be set from
``tmc simulate``. Nothing here trains or simulates: the harness is replaced by a stand-in
that records the config it is handed."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.images import write_images
from tmc.cli import app
from tmc.common.federation.config import FederationConfig
from tmc.common.federation.messages import TrainInstruction
from tmc.common.training import PrivacyConfig, TrainConfig

# The modules, not the commands that the package exports under the same names.
COMMAND_MODULES = [importlib.import_module(f"tmc.simulation.{m}") for m in ("simulate_cmd", "demo")]
ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = FederationConfig().to_run_config()
runner = CliRunner()


class _HarnessReachedError(Exception):
    """Raised by the stand-in harness: the command got as far as starting a federation."""


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[FederationConfig]:
    """The configs the commands hand to the simulation harness (which does not run)."""
    seen: list[FederationConfig] = []

    def stand_in(config: FederationConfig, **_: Any) -> list[object]:
        seen.append(config)
        raise _HarnessReachedError

    for module in COMMAND_MODULES:
        monkeypatch.setattr(module, "simulate", stand_in)
    return seen


def _run(args: list[str], handed: list[FederationConfig]) -> FederationConfig:
    result = runner.invoke(app, args)
    assert isinstance(result.exception, _HarnessReachedError), result.output
    [config] = handed
    return config


def _differences(config: FederationConfig) -> dict[str, tuple[object, object]]:
    return {
        key: (DEFAULTS[key], value)
        for key, value in config.to_run_config().items()
        if value != DEFAULTS[key]
    }


def test_pyproject_states_the_declared_defaults() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        stated = tomllib.load(file)["tool"]["flwr"]["app"]["config"]
    assert stated == DEFAULTS


def test_training_and_dp_settings_default_as_the_run_config() -> None:
    # TrainConfig() is what code outside a federation trains with (benchmarks, tests).
    assert FederationConfig().train_config() == TrainConfig()
    dp = {"dp-epsilon": "target_epsilon", "dp-delta": "delta", "dp-clip": "clip"}
    dp["dp-noise-multiplier"] = "noise_multiplier"
    for key, name in dp.items():
        assert PrivacyConfig.model_fields[name].default == DEFAULTS[key], key
    # "Off" is spelled 0 in both (TOML has no null), and 0 of both means no DP at all.
    assert DEFAULTS["dp-epsilon"] == DEFAULTS["dp-noise-multiplier"] == 0
    assert FederationConfig().privacy_config() is None


def test_the_upload_encoding_has_one_default() -> None:
    # The server always says how to upload; the message carries no default of its own.
    assert TrainInstruction.model_fields["encoding"].is_required()
    assert DEFAULTS["upload-dtype"] == "float32"


def test_simulate_without_options_runs_the_declared_defaults(
    tmp_path: Path, handed: list[FederationConfig]
) -> None:
    config = _run(["simulate", "--registry", str(tmp_path / "reg")], handed)
    # Only what simulate derives differs: where the registry is, and that a round waits
    # for every simulated silo.
    assert _differences(config) == {
        "registry": (DEFAULTS["registry"], str(tmp_path / "reg")),
        "min-silos": (DEFAULTS["min-silos"], DEFAULTS["num-silos"]),
        "round-interval": (DEFAULTS["round-interval"], 1.0),
    }


def test_demo_without_options_runs_the_declared_defaults(
    tmp_path: Path, handed: list[FederationConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = _run(["demo"], handed)
    assert _differences(config) == {
        "registry": (DEFAULTS["registry"], "demo-registry"),
        "min-silos": (DEFAULTS["min-silos"], DEFAULTS["num-silos"]),
    }


def _every_key(tmp_path: Path) -> dict[str, object]:
    """A value other than the default for every key, valid together."""
    images = tmp_path / "images"
    write_images(images, {"cat": 2, "dog": 2})
    return {
        "registry": str(tmp_path / "reg"),
        "dataset": "imagefolder",
        "dataset-root": str(images),
        "class-names": "cat,dog",
        "in-channels": 1,
        "image-size": 16,
        "split": "iid",
        "num-silos": 3,
        "increments": 4,
        "seed": 7,
        "public-fraction": 0.5,
        "public-classes": "0",
        "architecture": "resnet18",
        "base-weights": "init",
        "tangent": "last-stage",
        "rounds": 3,
        "round-interval": 2.5,
        "max-idle-rounds": 4,
        "min-silos": 2,
        "wait-seconds": 5.0,
        "hello-timeout": 6.0,
        "round-timeout": 7.0,
        "epochs": 3,
        "lr": 0.5,
        "batch-size": 4,
        "loss": "ce",
        "kappa": 5.0,
        "penalty": 0.25,
        "client-device": "cpu",
        "dp-epsilon": 3.0,
        "dp-delta": 1e-6,
        "dp-clip": 2.0,
        "dp-noise-multiplier": 1.5,
        "weighting": "num-examples",
        "max-norm": 99.0,
        "upload-dtype": "int8",
        "require-authenticated-silos": True,
        "evaluate-server": False,
        "evaluate-federated": False,
    }


def _argument(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_key_can_be_set_from_simulate(tmp_path: Path, handed: list[FederationConfig]) -> None:
    values = _every_key(tmp_path)
    assert values.keys() == DEFAULTS.keys()  # a new key needs a value here
    assert all(values[key] != DEFAULTS[key] for key in values)
    args = ["simulate"] + [f for k, v in values.items() for f in (f"--{k}", _argument(v))]
    config = _run(args, handed)
    assert config.to_run_config() == values


def test_the_options_users_know_keep_their_names(
    tmp_path: Path, handed: list[FederationConfig]
) -> None:
    args = ["simulate", "--registry", str(tmp_path), "--silos", "4", "--model", "resnet18"]
    config = _run(args, handed)
    assert (config.num_silos, config.architecture) == (4, "resnet18")


def test_simulate_derives_increments_from_zero(
    tmp_path: Path, handed: list[FederationConfig]
) -> None:
    args = ["simulate", "--registry", str(tmp_path), "--increments", "0", "--rounds", "3"]
    assert _run(args, handed).increments == 3


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["simulate", "--epochs", "0"], "epochs"),
        (["simulate", "--dp-delta", "1"], "dp-delta"),
        (["demo", "--silos", "11"], "num-silos"),
    ],
)
def test_a_value_out_of_bounds_is_refused_naming_the_key(
    tmp_path: Path, handed: list[FederationConfig], args: list[str], named: str
) -> None:
    result = runner.invoke(app, [*args, "--registry", str(tmp_path / "reg")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert named in result.output
    assert handed == []
