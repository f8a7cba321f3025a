"""Smoke test of the privacy benchmark: one tiny run, its files and their keys."""

from __future__ import annotations

import json
from pathlib import Path

from bench import privacy


def test_privacy_benchmark_writes_every_row(tmp_path: Path) -> None:
    args = ["--quick", "--configs", "iid", "--silos", "2", "--seeds", "1", "--epochs", "1"]
    assert privacy.main([*args, "--epsilons", "8", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "privacy_quick.json").read_text())
    rows = document["results"]["iid-2"]
    assert set(rows) == {"theta0", "float32", "int8", "dp-8"}
    assert all(0.0 <= rows[r]["mean"] <= 1.0 for r in rows)
    assert rows["dp-8"]["epsilon"] <= 8.0
    assert rows["dp-8"]["sigma"] > 0
    assert "| iid-2 |" in (tmp_path / "privacy_quick.md").read_text()
