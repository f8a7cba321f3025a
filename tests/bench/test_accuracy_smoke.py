"""The accuracy benchmark end to end on a tiny configuration (seconds, no Ray): every
in-process method, selection, aggregation, the report files; and the FedAvg code path
(Flower's own FedAvg strategy, our ServerApp and ClientApp) through an in-process Grid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.supercore.task_identity import TaskIdentity

from bench.accuracy import (
    Settings,
    method_skips,
    parse_args,
    run_benchmark,
    settings_for,
    write_results,
)
from bench.accuracy_fedavg import FedAvgJob, make_client_app, make_server_app
from bench.accuracy_methods import METHODS, LrRun, Outputs
from bench.accuracy_report import json_summary
from bench.accuracy_setup import Scenario, carve_validation, prepare
from tests.server.federation.fake_grid import FakeGrid, simulated_node
from tmc.common.threads import torch_threads

TINY = Settings(
    mode="quick",
    bases=("all",),
    splits=("class",),
    silos=(2,),
    seeds=1,
    epochs=1,
    rounds=1,
    lrs=(1e-3,),
    fedavg=False,
    simulate_check=False,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):  # restored after: other tests must see the default
        yield


def test_tiny_benchmark_produces_every_method_and_check(tmp_path: Path) -> None:
    results = run_benchmark(TINY)
    assert list(results["configs"]) == ["class-2"]
    in_process = [m for m in METHODS if m != "fedavg"]
    config = results["configs"]["class-2"]
    assert list(config["methods"]) == in_process
    for entry in config["methods"].values():
        assert 0.0 <= entry["accuracy"]["mean"] <= 1.0
        assert entry["lr"] == [1e-3]
        assert entry["accuracy"]["std"] == 0.0
        assert 0.0 <= entry["task_accuracy"]["mean"] <= 1.0  # a class split
    assert config["methods"]["paragon"]["error_wrt_paragon"]["mean"] == 0.0
    assert config["linearity_max_abs"] < 1e-4
    assert config["forgetting"]["exact"] is True
    summary = json_summary(results)
    assert set(summary) == {"class-2"}
    assert {"tmc", "ensemble", "soup", "sequential", "paragon"} <= set(summary["class-2"])
    assert any(t["target"].startswith("TMC beats") for t in results["targets"])

    written = write_results(results, tmp_path)
    names = sorted(p.name for p in written)
    assert names == [
        "accuracy_quick.json",
        "accuracy_quick.md",
        "accuracy_quick.png",
        "accuracy_quick_error.png",
    ]
    assert json.loads((tmp_path / "accuracy_quick.json").read_text())["mode"] == "quick"
    assert "| class-2 |" in (tmp_path / "accuracy_quick.md").read_text()


def test_fedavg_runs_flowers_strategy_over_our_apps(monkeypatch: pytest.MonkeyPatch) -> None:
    # Messages built outside a Flower runtime need the identity a runtime would set.
    for attribute, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attribute, value)
    scenario = Scenario(split="iid", num_silos=2, seed=0)
    job = FedAvgJob(scenario, 1e-3)
    results: dict[FedAvgJob, Outputs] = {}
    server = make_server_app([job], results, rounds=1, epochs_per_round=1)
    client = make_client_app()
    grid = FakeGrid()
    for silo in range(2):
        grid.nodes[silo + 1] = simulated_node(silo + 1, silo, 2, client)
    server(grid, grid.nodes[1].context)
    prepared = prepare(scenario)
    outputs = results[job]
    assert outputs.test.shape == (len(prepared.test), 10)
    assert outputs.validation.shape == (len(prepared.validation), 10)
    labels = torch.from_numpy(prepared.test.targets.copy())
    assert float((outputs.test.argmax(1) == labels).float().mean()) > 0.5


def test_validation_is_carved_from_each_silo_and_never_overlaps() -> None:
    prepared = prepare(Scenario(split="class", num_silos=2, seed=0))
    train = np.concatenate([part.indices for part in prepared.train_parts])  # type: ignore[attr-defined]
    validation = prepared.validation.indices  # type: ignore[attr-defined]
    assert not set(train) & set(validation)
    private = set(prepared.partition.private_indices.tolist())
    assert set(train) | set(validation) == private
    assert 0.15 < len(validation) / len(private) < 0.25
    targets = np.array([0, 0, 1, 1, 1, 1, 1, 2])
    kept, held = carve_validation(targets, np.arange(8), fraction=0.2, seed=1)
    assert 2 in targets[kept]  # a lone sample stays in training
    assert len(held) == 1


def test_cli_modes() -> None:
    quick = settings_for(parse_args(["--quick"]))
    assert (quick.bases, quick.silos, quick.seeds) == (("all",), (5, 10), 2)
    full = settings_for(parse_args(["--seeds", "4"]))
    assert (full.bases, full.silos, full.seeds) == (("all", "half"), (5, 10, 20), 4)
    scenarios, skipped = full.scenarios()
    assert skipped == [
        "class-20: a class split needs a class per silo",
        "half:class-20: a class split needs a class per silo",
    ]
    assert len(scenarios) == 2 * 8 * 4


def test_methods_a_configuration_could_not_run_are_reported_with_why() -> None:
    scenario = Scenario(split="dirichlet:0.5", num_silos=10, seed=1)
    runs = {
        scenario: {
            3e-4: LrRun(lr=3e-4, skipped={"tmc_dp": "batch-size 32 ≥ this silo's 21 examples"}),
            1e-3: LrRun(lr=1e-3, skipped={"tmc_dp": "batch-size 32 ≥ this silo's 21 examples"}),
        }
    }
    assert method_skips(runs) == [
        "tmc_dp in dirichlet:0.5-10 (seed 1, lr 0.0003): batch-size 32 ≥ this silo's 21 examples"
    ]
