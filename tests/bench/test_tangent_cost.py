"""Smoke test of the tangent cost benchmark: tiny sizes, keys and types only (no timing
assertions: this machine's timings are noise at these sizes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import tangent_cost
from bench.machine import describe_machine
from bench.timing import interleaved_medians, paired_ratio

RATIO_KEYS = (
    "tangent_over_plain_forward",
    "torch_func_jvp_over_plain_forward",
    "flop_ratio",
    "train_step_tangent_over_plain",
    "train_step_jvp_over_plain",
    "train_step_flop_ratio",
)


def _positive(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def _check_model(result: dict[str, object], model: str) -> None:
    assert result["model"] == model
    for key in RATIO_KEYS:
        assert _positive(result[key]), key
        assert _positive(result[f"last_stage_{key}"]), key
    spread = result["spread"]
    assert isinstance(spread, dict)
    for scope in ("full", "last_stage"):
        for what in ("forward", "train_step"):
            for candidate in ("plain", "tangent", "jvp"):
                stats = spread[f"{scope}/{what}/{candidate}"]
                assert stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]
                assert stats["reps"] == result["reps"]


def test_run_on_tiny_sizes_gives_every_ratio(tmp_path: Path) -> None:
    result = tangent_cost.run(
        batch=2,
        size=32,
        reps=2,
        warmup=1,
        device="cpu",
        small_batch=4,
        small_size=8,
        lite_input_size=None,
    )
    assert (result["batch"], result["image_size"], result["reps"]) == (2, 32, 2)
    _check_model(result, "resnet18")
    small = result["small_cnn"]
    assert isinstance(small, dict)
    _check_model(small, "small-cnn")
    assert "efficientnet_lite0" not in result
    # The FLOP floor of full linearisation: each linearised conv runs three times
    # (the first one twice), so the ratio lies between 2 and 3.
    assert 2.0 < float(result["flop_ratio"]) < 3.0  # type: ignore[arg-type]
    assert 1.0 < float(result["last_stage_flop_ratio"]) < float(result["flop_ratio"])  # type: ignore[arg-type]
    machine = result["machine"]
    assert isinstance(machine, dict)
    assert {"cpu_model", "cpu_cores", "torch_threads", "torch_version", "device"} <= machine.keys()
    text = json.dumps(result)  # JSON-ready as it is
    assert "NaN" not in text
    text = tangent_cost.markdown(result)
    assert "| resnet18 | forward, full |" in text
    assert "efficientnet-lite0" not in text


def test_efficientnet_lite_last_stage_gives_every_ratio() -> None:
    """The strong-backbone base on both tangent paths (its last stage only: the depthwise
    convs of the full scope take tens of seconds on a loaded 2-core CPU)."""
    cpu = tangent_cost.resolve_device("cpu")
    result = tangent_cost.measure_scope(
        "efficientnet-lite0",
        "last-stage",
        channels=1,
        batch=2,
        size=28,
        reps=2,
        warmup=1,
        device=cpu,
        input_size=32,
    )
    for key in RATIO_KEYS:
        assert _positive(result[key]), key
    assert 1.0 < float(result["flop_ratio"]) < 3.0  # type: ignore[arg-type]


def test_main_writes_json_and_markdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = json.loads(json.dumps(_fake_result()))
    monkeypatch.setattr(tangent_cost, "run", lambda **_: fake)
    tangent_cost.main(["--json", "--quick", "--device", "cpu", "--out", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "tangent_cost.json").read_text())
    assert (tmp_path / "tangent_cost.md").read_text().startswith("# Tangent forward cost")


def _fake_result() -> dict[str, object]:
    numbers: dict[str, object] = {key: 1.5 for key in RATIO_KEYS}
    numbers |= {f"last_stage_{k}": 1.2 for k in RATIO_KEYS}
    numbers |= {"paired_ratios": dict.fromkeys(RATIO_KEYS, 1.4)}
    numbers |= {"last_stage_paired_ratios": dict.fromkeys(RATIO_KEYS, 1.1)}
    model = {"model": "resnet18", **numbers, "batch": 32, "image_size": 64, "reps": 10}
    return {
        **model,
        "warmup": 1,
        "small_cnn": {**model, "model": "small-cnn", "batch": 256, "image_size": 8},
        "machine": describe_machine("cpu"),
    }


def test_interleaved_medians_and_paired_ratio() -> None:
    calls: list[str] = []
    stats = interleaved_medians(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=1
    )
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rotating order
    assert {s.reps for s in stats.values()} == {3}
    assert _positive(paired_ratio(stats["a"], stats["b"]))
    with pytest.raises(ValueError, match="reps"):
        interleaved_medians({"a": lambda: None}, reps=0)
