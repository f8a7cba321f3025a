"""Values of a real on-disk registry: cached logits equal the composed model, leave-one-out
equals actually composing without each silo, a forget's preview equals the forget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.registries import digits_registry
from tmc.cli import app
from tmc.common.models import BaseModelSpec, MaterializedBase, from_theta0
from tmc.common.tangent import TangentModel
from tmc.server.composed import ComposedModel
from tmc.server.registry import Registry
from tmc.server.valuation import (
    ComponentLogits,
    kept_valuations,
    preview_forget,
    value_version,
)
from tmc.server.valuation.split import evaluation_split

SILOS = (("silo-0", (0, 1, 2)), ("silo-1", (3, 4, 5, 6)), ("silo-2", (7, 8, 9)))


@pytest.fixture
def registry_path(tmp_path: Path, digits_base: MaterializedBase) -> Path:
    return digits_registry(tmp_path / "registry", digits_base, silos=SILOS, rounds=2)


def _accuracy_without(
    registry: Registry, split_inputs: torch.Tensor, labels: np.ndarray, silo: str
) -> float:
    """Recompose from scratch without ``silo`` and run the model: the slow, direct way."""
    spec = BaseModelSpec.model_validate_json(registry.base.spec_json)
    base = from_theta0(spec, registry.theta0(), expected_sha256=registry.base.sha256)
    model = TangentModel(base.network, base.tangent_names).eval()
    model.load_delta(dict(registry.compose(exclude_silos=[silo])))
    with torch.no_grad():
        predictions = model(split_inputs).argmax(dim=1).numpy()
    return float(np.mean(predictions == labels))


def test_cached_logits_sum_to_the_composed_model(registry_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        split = evaluation_split(registry, "digits")
        cache = ComponentLogits(registry, split)
        version = registry.version()
        total = sum(cache.tangent(c) for c in version.component_ids)
        cached = cache.theta0() + total / len(version.component_ids)
        composed = ComposedModel.from_registry(registry)
        direct = composed.scores(split.inputs).double().numpy()
    assert np.abs(cached - direct).max() < 1e-4


def test_leave_one_out_equals_composing_without_each_silo(registry_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        split = evaluation_split(registry, "digits")
        valuation = value_version(registry, split)
        full = ComposedModel.from_registry(registry).scores(split.inputs).argmax(dim=1)
        full_accuracy = float((full == split.labels).float().mean())
        assert valuation.accuracy == pytest.approx(full_accuracy, abs=1 / len(split.labels))
        for value in valuation.silos:
            without = _accuracy_without(registry, split.inputs, split.labels.numpy(), value.silo)
            assert value.leave_one_out == pytest.approx(
                valuation.accuracy - without, abs=1 / len(split.labels)
            )
        assert sum(s.shapley for s in valuation.silos) == pytest.approx(
            valuation.accuracy - valuation.theta0_accuracy, abs=1e-12
        )
        assert {s.silo for s in valuation.silos} == {"silo-0", "silo-1", "silo-2"}
        assert all(s.components == 2 for s in valuation.silos)


def test_the_cache_spares_forward_passes_and_values_are_kept(registry_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        split = evaluation_split(registry, "digits")
        first = value_version(registry, split)
        again = value_version(registry, split)
        assert first.forward_passes == 6
        assert again.forward_passes == 0
        assert again.silos == first.silos
        registry.forget(silo="silo-1", actor="test", reason="test")
        after = value_version(registry, split)
        kept = kept_valuations(registry.root, silo="silo-1")
    assert [v.version for v in kept] == [first.version]
    assert after.version > first.version
    assert "silo-1" not in {s.silo for s in after.silos}


def test_preview_equals_the_forget(registry_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        split = evaluation_split(registry, "digits")
        classes = tuple(str(c) for c in range(10))
        preview = preview_forget(registry, split, "silo-2", class_names=classes)
        removed = {c.id for c in registry.list_components(silo="silo-2")}
        assert set(preview.removed) == removed
        result = registry.forget(silo="silo-2", actor="test", reason="test")
        assert set(result.removed) == removed
        after = ComposedModel.from_registry(registry).scores(split.inputs).argmax(dim=1)
    accuracy_after = float((after == split.labels).float().mean())
    assert preview.accuracy_after == pytest.approx(accuracy_after, abs=1 / len(split.labels))


def test_value_command_table_and_json(registry_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["registry", "value", "--registry", str(registry_path)])
    assert shown.exit_code == 0, shown.output
    assert "silo-1" in shown.output
    assert "Shapley" in shown.output
    as_json = runner.invoke(app, ["registry", "value", "--registry", str(registry_path), "--json"])
    assert as_json.exit_code == 0
    payload = json.loads(as_json.stdout)
    assert payload["method"] == "exact"
    assert len(payload["silos"]) == 3
    preview = runner.invoke(
        app, ["registry", "value", "--registry", str(registry_path), "--what-if", "nobody"]
    )
    assert preview.exit_code == 2
    assert "nobody" in preview.output
