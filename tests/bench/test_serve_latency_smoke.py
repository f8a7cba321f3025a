"""Smoke test of the serve latency benchmark: two tiny registries, one repetition, keys
and types only (no timing assertions: these sizes time nothing but noise)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import serve_latency


@pytest.mark.slow  # starts two `tmc serve` processes
def test_serve_latency_runs_and_reports(tmp_path: Path) -> None:
    argv = ["--counts", "1,3", "--reps", "1", "--requests", "3", "--clients", "2"]
    assert serve_latency.main([*argv, "--out-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "serve_latency.json").read_text())
    assert [row["components"] for row in results["rows"]] == [1, 3]
    for row in results["rows"]:
        for key in ("p50_ms", "p99_ms", "throughput_rps", "p99_ratio_to_first"):
            assert isinstance(row[key], float)
            assert math.isfinite(row[key])
            assert row[key] > 0
        assert len(row["per_rep"]) == 1
    assert results["rows"][0]["p99_ratio_to_first"] == 1.0
    assert isinstance(results["flat"], bool)
    assert results["machine"]["cpu_cores"] >= 1
    markdown = (tmp_path / "serve_latency.md").read_text()
    assert "| 3 |" in markdown
    forget = results["forget"]
    assert forget["forgets"] == 2
    assert forget["next_answer_without_the_silo"] == 2
    assert "Machine:" in markdown
