"""Smoke test of the unlearning audit: one tiny run; the exact forget equals a federation
that never had the silo, bit for bit, and every row is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import unlearning


@pytest.mark.slow
def test_one_tiny_audit(tmp_path: Path) -> None:
    argv = ["--silos", "3", "--seeds", "0", "--epochs", "1", "--fedavg-rounds", "1"]
    assert unlearning.main([*argv, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "unlearning_digits.json").read_text())
    (seed,) = results["seeds"]
    assert seed["after_equals_never"] is True
    assert set(seed["rows"]) == set(unlearning.LABELS)
    # the exact forget and the federation without the silo give the same attack results
    assert seed["rows"]["after"] == seed["rows"]["never"]
    for row in seed["rows"].values():
        assert 0.0 <= row["loss_auc"] <= 1.0
        assert 0.0 <= row["confidence_auc"] <= 1.0
    assert "bit for bit in every seed: **yes**" in (tmp_path / "unlearning_digits.md").read_text()
