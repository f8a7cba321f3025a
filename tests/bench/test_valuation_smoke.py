"""Smoke test of the valuation benchmark: one tiny run writes every field (no timing asserts:
timings on a shared machine are noise); the two ways agree on every coalition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import valuation


@pytest.mark.slow
def test_one_tiny_run_writes_the_table(tmp_path: Path) -> None:
    assert valuation.main(["--silos", "2", "--reps", "1", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "valuation.json").read_text())
    (row,) = results["rows"]
    assert row["silos"] == 2
    assert row["coalitions"] == 4
    assert row["recompose_measured"] == "all"
    assert row["max_utility_difference"] <= 1 / row["split_examples"]
    for key in ("cache_fill_ms", "cached_shapley_ms", "recompose_all_ms", "speedup"):
        assert row[key] > 0
    assert "| 2 | 4 |" in (tmp_path / "valuation.md").read_text()
