"""Δ algebra reads like the maths and refuses what does not add up."""

from __future__ import annotations

import pytest
import torch

from tmc.common.components import Delta, weighted_sum
from tmc.common.errors import ComponentSchemaError, CompositionError


def _delta(seed: int, shapes: dict[str, tuple[int, ...]] | None = None) -> Delta:
    generator = torch.Generator().manual_seed(seed)
    shapes = shapes or {"a.weight": (3, 4), "b.bias": (5,)}
    return Delta({n: torch.randn(s, generator=generator) for n, s in shapes.items()})


def test_algebra_matches_tensor_arithmetic() -> None:
    d1, d2 = _delta(1), _delta(2)
    combo = 2.0 * d1 - d2 / 4 + (-d1)
    for name in d1:
        torch.testing.assert_close(combo[name], 2 * d1[name] - d2[name] / 4 - d1[name])
    total = sum([d1, d2, d1])
    assert isinstance(total, Delta)
    torch.testing.assert_close(total["a.weight"], 2 * d1["a.weight"] + d2["a.weight"])


def test_weighted_sum() -> None:
    d1, d2 = _delta(1), _delta(2)
    result = weighted_sum([d1, d2], [0.25, 0.75])
    torch.testing.assert_close(result["b.bias"], 0.25 * d1["b.bias"] + 0.75 * d2["b.bias"])
    with pytest.raises(CompositionError, match="one weight per delta"):
        weighted_sum([d1, d2], [1.0])


def test_incompatible_deltas_are_refused() -> None:
    d1 = _delta(1)
    with pytest.raises(ComponentSchemaError, match="different keys"):
        _ = d1 + _delta(2, {"a.weight": (3, 4)})
    with pytest.raises(ComponentSchemaError, match=r"\(3, 4\)"):
        _ = d1 + _delta(2, {"a.weight": (4, 3), "b.bias": (5,)})
    with pytest.raises(CompositionError, match="zero"):
        _ = d1 / 0


def test_only_float32_is_accepted() -> None:
    with pytest.raises(ComponentSchemaError, match="float32"):
        Delta({"a": torch.zeros(3, dtype=torch.float64)})


def test_norm_finite_and_equal() -> None:
    d = Delta({"a": torch.tensor([3.0, 4.0])})
    assert d.norm() == pytest.approx(5.0)
    assert d.is_finite()
    assert not Delta({"a": torch.tensor([float("nan")])}).is_finite()
    assert d.equal(Delta({"a": torch.tensor([3.0, 4.0])}))
    assert not d.equal(Delta({"a": torch.tensor([3.0, 4.000001])}))
