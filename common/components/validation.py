"""Checking a component against the base it claims: nothing unchecked enters a composition."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from tmc.common.components.component import Component
from tmc.common.errors import (
    BaseMismatchError,
    ComponentError,
    ComponentSchemaError,
    NonFiniteError,
    NormBoundError,
)


def check_delta_schema(
    delta: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...]]
) -> None:
    """Raise :class:`ComponentSchemaError` unless ``delta`` has exactly these keys and shapes."""
    missing = sorted(set(shapes) - set(delta))
    extra = sorted(set(delta) - set(shapes))
    if missing or extra:
        raise ComponentSchemaError(
            f"Δ keys do not match the base's tangent parameters: missing {missing[:5]}, "
            f"unexpected {extra[:5]}"
        )
    wrong = [
        f"{n}: {tuple(delta[n].shape)} (expected {tuple(shapes[n])})"
        for n in sorted(shapes)
        if tuple(delta[n].shape) != tuple(shapes[n])
    ]
    if wrong:
        raise ComponentSchemaError(f"Δ shapes do not match the base: {'; '.join(wrong[:5])}")


@dataclass(frozen=True)
class TangentSchema:
    """What every component of one base must look like: the θ0 hash and Δ's shapes."""

    base_sha256: str
    shapes: Mapping[str, tuple[int, ...]]

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())


def validate_component(
    component: Component,
    schema: TangentSchema,
    *,
    max_norm: float | None = None,
    expected_silo: str | None = None,
) -> None:
    """Raise a :class:`ComponentError` subclass naming the first problem found.

    Checked: the θ0 hash, the silo it claims (when the caller knows who sent it), keys and
    shapes (dtype is float32 by construction of :class:`Delta`), finiteness, the norm bound.
    """
    meta = component.meta
    if meta.base_sha256 != schema.base_sha256:
        raise BaseMismatchError(
            f"component {component.id[:12]}… was trained from base {meta.base_sha256[:12]}…, "
            f"not this federation's base {schema.base_sha256[:12]}…"
        )
    if expected_silo is not None and meta.silo != expected_silo:
        raise ComponentError(
            f"component claims silo {meta.silo!r} but was sent by silo {expected_silo!r}"
        )
    check_delta_schema(component.delta, schema.shapes)
    if not component.delta.is_finite():
        bad = [n for n, t in component.delta.items() if not bool(torch.isfinite(t).all())]
        raise NonFiniteError(f"component {component.id[:12]}… has NaN/Inf in {bad[:5]}")
    if max_norm is not None:
        norm = component.delta.norm()
        if norm > max_norm:
            raise NormBoundError(
                f"component {component.id[:12]}… has norm {norm:.4g} > bound {max_norm:.4g}"
            )
