"""Linear: y = x·W0ᵀ + b0,  ẏ = t·W0ᵀ + x·ΔWᵀ + Δb.

Stacked: x·W0ᵀ runs once on [x; t]; b0 goes to the primal half, x·ΔWᵀ + Δb to the tangent
half."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tmc.common.tangent.dual import Dual, DualValue, Tangent
from tmc.common.tangent.ops.rule import OpRule, add_tangents, affine_stacked


def linear_apply(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, w, b)


def _pair(m: nn.Linear, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    y = F.linear(x, m.weight, m.bias)
    through_w0 = F.linear(t, m.weight) if t is not None else None
    dw, db = d.get("weight"), d.get("bias")
    if dw is not None:
        own: Tangent = F.linear(x, dw, db)
    elif db is not None:
        own = db.expand_as(y)
    else:
        own = None
    return y, add_tangents(through_w0, own)


def _stacked(
    m: nn.Linear, value: DualValue, _: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    if value.primal.dim() < 2:
        return None  # unbatched input
    dw, db = d.get("weight"), d.get("bias")

    def apply(inp: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return linear_apply(inp, m.weight, b)

    def own(x: torch.Tensor) -> Tangent:
        return linear_apply(x, dw, db) if dw is not None else db

    return affine_stacked(value, apply, m.bias, own)


LINEAR = OpRule("linear", _pair, _stacked, modules=(nn.Linear,), reads_delta=True)
