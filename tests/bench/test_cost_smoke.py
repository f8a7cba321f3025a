"""Smoke test of the cost benchmark: tiny sizes, keys and types only (no timing assertions:
this machine's timings are noise at these sizes). The Flower simulation is replaced by a
stub here (starting Ray takes longer than this whole test should)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import cost
from bench.cost_federation import measure_round_overhead
from bench.cost_registry import snapshot
from bench.cost_report import check_targets
from tmc.server.federation import RoundSummary

TINY = cost.CostSettings(
    counts=(1, 2),
    resnet_batch=1,
    resnet_size=32,
    small_batch=4,
    reps=2,
    warmup=1,
    registry_counts=(2, 3),
    parameters=1000,
    compose_reps=2,
    registry_reps=2,
    sections=("inference", "registry", "bytes"),
    threads=1,
)


def _positive(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def _check_inference(data: dict[str, Any], model: str) -> None:
    assert data["model"] == model
    assert data["counts"] == [1, 2]
    for key in (
        "inference_tmc_over_ensemble",
        "paired_tmc_over_ensemble",
        "flop_ratio",
        "tmc_ms",
        "ensemble_ms",
        "ensemble_gflop",
    ):
        assert set(data[key]) == {"1", "2"}, key
        assert all(_positive(v) for v in data[key].values()), key
    # The ensemble's FLOPs grow with N; the composed model's do not depend on N.
    assert data["ensemble_gflop"]["2"] == pytest.approx(2 * data["ensemble_gflop"]["1"])
    assert data["flop_ratio"]["2"] == pytest.approx(data["flop_ratio"]["1"] / 2)
    assert data["ensemble_bn_folded"] is True
    for n in ("1", "2"):
        for candidate in ("tmc", "ensemble"):
            stats = data["spread"][f"{n}/{candidate}"]
            assert stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]
            assert stats["reps"] == 2


def _check_registry(result: dict[str, Any]) -> None:
    registry = result["registry"]
    assert registry["parameters_per_component"] == 1000
    for key in ("compose_seconds", "compose_incremental_seconds", "forget_seconds"):
        assert result[key] == registry[key]
        assert set(result[key]) == {"2", "3"}
        assert all(_positive(v) for v in result[key].values())
    assert registry["spread"]["forget/3"]["reps"] == 2
    assert registry["spread"]["compose/2"]["reps"] == 2


def test_tiny_run_gives_every_key_and_writes_results(tmp_path: Path) -> None:
    result = cost.run(TINY, device=torch.device("cpu"), quick=True)
    _check_inference(result["resnet18"], "resnet18")
    _check_inference(result["small_cnn"], "small-cnn")
    assert (
        result["inference_tmc_over_ensemble"] == result["resnet18"]["inference_tmc_over_ensemble"]
    )
    _check_registry(result)
    upload = result["upload_bytes"]
    for model in ("small_cnn", "resnet18"):
        full, last = upload[model]["full"], upload[model]["last_stage"]
        assert 0 < last["component_bytes"] < full["component_bytes"] <= full["theta0_bytes"]
        assert 0 < full["component_over_theta0"] <= 1
        sizes = result["bytes_per_component"][model]["full"]
        assert sizes["bfloat16"]["float32_over_this"] > 1.9
        assert sizes["int8"]["float32_over_this"] >= 3.9
        assert sizes["int8"]["reply_bytes"] < sizes["float32"]["reply_bytes"] / 3.5
    assert "flower_round_overhead" not in result
    assert set(result["targets"]) == {
        "inference_tmc_over_ensemble_at_10",
        "forget_largest_over_10",
    }
    assert result["machine"]["device"] == "cpu"
    assert result["machine"]["torch_threads"] == 1

    paths = cost.write_results(result, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        ["cost_quick.json", "cost_quick.md", "cost_quick_inference.png", "cost_quick_registry.png"]
    )
    assert json.loads((tmp_path / "cost_quick.json").read_text())["quick"] is True
    text = (tmp_path / "cost_quick.md").read_text()
    assert "| resnet18 | 2 |" in text
    assert "## Registry on disk" in text
    assert (tmp_path / "cost_quick_inference.png").read_bytes()[:4] == b"\x89PNG"


def test_targets_are_judged_on_what_was_measured() -> None:
    targets = check_targets(
        {
            "inference_tmc_over_ensemble": {"1": 2.0, "10": 0.3},
            "forget_seconds": {"10": 0.4, "100": 0.9},
        }
    )
    assert targets["inference_tmc_over_ensemble_at_10"]["met"] is True
    assert targets["forget_largest_over_10"]["met"] is False
    assert targets["forget_largest_over_10"]["largest_n"] == 100
    empty = check_targets({})
    assert all(t["met"] is None for t in empty.values())


def test_round_overhead_subtracts_the_slowest_silo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_simulate(config: Any) -> list[RoundSummary]:
        return [
            RoundSummary(
                run_id=1,
                round=r,
                silos_asked=("silo-0", "silo-1"),
                accepted=("a", "b"),
                accepted_silos=("silo-0", "silo-1"),
                rejected=(),
                idle=(),
                version=r,
                components=2 * r,
                seconds=seconds,
                slowest_training_seconds=1.0,
            )
            for r, seconds in ((1, 10.0), (2, 1.5), (3, 1.25))
        ]

    monkeypatch.setattr("tmc.simulation.simulate", fake_simulate)
    result = measure_round_overhead(tmp_path, silos=2, rounds=3)
    assert result["completed"] is True
    assert [r["overhead_seconds"] for r in result["per_round"]] == [9.0, 0.5, 0.25]
    assert result["first_round_overhead_seconds"] == 9.0
    assert result["overhead_seconds_median_after_first"] == pytest.approx(0.375)


def test_snapshot_links_blobs_and_copies_the_database(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "blobs").mkdir(parents=True)
    (src / "blobs" / "a.safetensors").write_bytes(b"blob")
    (src / "registry.db").write_bytes(b"db")
    snapshot(src, tmp_path / "dst")
    assert (tmp_path / "dst" / "blobs" / "a.safetensors").stat().st_nlink == 2
    assert (tmp_path / "dst" / "registry.db").stat().st_nlink == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip without CUDA")
def test_cuda_run_skips_cleanly_without_a_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cost.main(["--device", "cuda", "--json", "--out", str(tmp_path)]) == 0
    assert "skipped" in json.loads(capsys.readouterr().out)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_run_on_cuda(tmp_path: Path) -> None:  # pragma: no cover - GPU machines only
    settings = cost.CostSettings(**{**TINY.__dict__, "sections": ("inference",)})
    result = cost.run(settings, device=torch.device("cuda"), quick=True)
    _check_inference(result["resnet18"], "resnet18")
    assert "gpu_name" in result["machine"]
    paths = cost.write_results(result, tmp_path)
    assert (tmp_path / "cost_quick_cuda.json") in paths
