"""Composition is exact: order-free bit for bit, forgetting equals recomposition, and the
composed tangent model is the α-weighted ensemble of its components' outputs."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import random_delta
from tmc.common.components import Component, ComponentMeta, Delta, ExactSum, compose
from tmc.common.errors import CompositionError
from tmc.common.models import MaterializedBase
from tmc.common.tangent import TangentModel

BASE = "ab" * 32
SHAPES = {"w": (6, 5), "b": (7,)}


def make(seed: int, *, scale: float = 1.0, examples: int = 10) -> Component:
    generator = torch.Generator().manual_seed(seed)
    delta = Delta({n: torch.randn(s, generator=generator) * scale for n, s in SHAPES.items()})
    meta = ComponentMeta(base_sha256=BASE, silo=f"silo-{seed}", num_examples=examples + seed)
    return Component(delta, meta)


@given(st.permutations(list(range(9))), st.sampled_from(["uniform", "num-examples"]))
@settings(max_examples=25, deadline=None)
def test_shuffled_composition_is_bit_identical(order: list[int], weighting: str) -> None:
    components = [make(i, scale=10.0 ** (i % 4 - 2)) for i in range(9)]
    reference = compose(components, weighting)  # type: ignore[arg-type]
    shuffled = compose([components[i] for i in order], weighting)  # type: ignore[arg-type]
    assert shuffled.equal(reference)


def test_composition_is_the_weighted_mean() -> None:
    components = [make(i) for i in range(5)]
    composed = compose(components)
    mean = sum(c.delta for c in components) / 5
    for name in SHAPES:
        torch.testing.assert_close(composed[name], mean[name], atol=1e-6, rtol=0)
    by_examples = compose(components, "num-examples")
    weights = [c.meta.num_examples for c in components]
    expected = sum(c.delta * w for c, w in zip(components, weights, strict=True)) / sum(weights)
    torch.testing.assert_close(by_examples["w"], expected["w"], atol=1e-6, rtol=0)
    explicit = compose(components, {c.id: float(i + 1) for i, c in enumerate(components)})
    listed = compose(components, [float(i + 1) for i in range(5)])
    assert explicit.equal(listed)


def test_forgetting_equals_composition_without_byte_for_byte() -> None:
    components = [make(i, scale=0.1 * (i + 1)) for i in range(12)]
    for weighting in ("uniform", "num-examples"):
        running = ExactSum.of(components, weighting)  # type: ignore[arg-type]
        gone = components[4]
        weight = 1.0 if weighting == "uniform" else float(gone.meta.num_examples)
        running.remove(gone.delta, weight)
        rest = [c for c in components if c is not gone]
        assert running.mean().equal(compose(rest, weighting))  # type: ignore[arg-type]
        assert running.equal(ExactSum.of(rest, weighting))  # type: ignore[arg-type]


def test_running_sum_persists_exactly() -> None:
    running = ExactSum.of([make(i) for i in range(4)])
    restored = ExactSum.from_tensors(running.to_tensors(), running.state_metadata())
    assert restored.equal(running)
    assert restored.mean().equal(running.mean())


def test_removing_everything_gives_zeros_and_empty_is_refused() -> None:
    component = make(0)
    running = ExactSum.of([component])
    running.remove(component.delta)
    assert running.mean().norm() == 0.0
    with pytest.raises(CompositionError, match="empty"):
        running.remove(component.delta)
    with pytest.raises(CompositionError, match="no components"):
        compose([])


def test_bad_weights_are_refused() -> None:
    components = [make(0), make(1)]
    with pytest.raises(CompositionError, match="positive"):
        compose(components, [1.0, 0.0])
    with pytest.raises(CompositionError, match="2 components"):
        compose(components, [1.0])
    with pytest.raises(CompositionError, match="no weight"):
        compose(components, {components[0].id: 1.0})
    huge = make(3, scale=1e12)
    with pytest.raises(CompositionError, match="too large"):
        compose([huge])


def test_composed_model_is_the_ensemble_of_component_models(digits_base: MaterializedBase) -> None:
    """f_lin(x; θ0 + Σαᵢ Δᵢ) = Σ αᵢ f_lin(x; θ0 + Δᵢ) when Σ αᵢ = 1 (docs/notes/method.md)."""
    model = TangentModel(digits_base.network, digits_base.tangent_names)
    components = [
        Component(
            Delta(random_delta(digits_base, seed=s, scale=0.05)),
            ComponentMeta(base_sha256=digits_base.sha256, silo=f"s{s}", num_examples=10 * (s + 1)),
        )
        for s in range(4)
    ]
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = [model(x, dict(c.delta)) for c in components]
        for weighting, weights in (
            ("uniform", [0.25] * 4),
            ("num-examples", [c.meta.num_examples / 100 for c in components]),
        ):
            composed = model(x, dict(compose(components, weighting)))  # type: ignore[arg-type]
            ensemble = sum(w * o for w, o in zip(weights, outputs, strict=True))
            torch.testing.assert_close(composed, ensemble, atol=1e-5, rtol=0)
    random.shuffle(components)
    assert compose(components).equal(compose(sorted(components, key=lambda c: c.id)))
