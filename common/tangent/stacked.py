"""No-grad rules on stacked activations z = [x; t] (``common.tangent.dual``).

For an affine layer y = A(x) + b with tangent ẏ = A(t) + own(x) (own: the layer's Δ term,
``common.tangent.rules``), A runs once on z and the bias goes to the primal half only:

    A(z) = [A(x); A(t)],   then   z'[:n] += b,   z'[n:] += own(x)

ReLU keeps both halves in place: ẏ = t·1[x > 0] first (``threshold_backward``), then
y = max(x, 0) (the mask is the same before and after: max(x, 0) > 0 ⟺ x > 0). Ops that act
on each sample alone (pooling, flatten from dim 1) run on z as they are. Everything else
uses the pair rules on the two halves (views, no copy).

A step may overwrite its input only when that input is ``fresh`` and this step is its only
consumer (decided when the graph is compiled); otherwise it allocates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from tmc.common.tangent.dual import DualValue, Tangent
from tmc.common.tangent.rules import conv2d_apply, linear_apply

StackedRule = Callable[[Any, DualValue, bool, Mapping[str, torch.Tensor]], "DualValue | None"]
"""(module, input, single_user, Δ) → output, or None where the pair rule must be used."""


def _owned(value: DualValue, single_user: bool) -> bool:
    """May the consumer overwrite ``value``'s tensors (after ``stack()`` when it has a tangent)?"""
    return single_user and value.fresh


def affine_stacked(
    value: DualValue,
    apply: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    bias: torch.Tensor | None,
    own: Callable[[torch.Tensor], Tangent],
) -> DualValue:
    """y = apply(x, b), ẏ = apply(t, None) + own(x), with x and t through ``apply`` at once.

    ``bias`` and ``own``'s result may be tensors that broadcast to the output."""
    x = value.primal
    if value.tangent is None:
        y = apply(x, None) if bias is None else apply(x, bias.flatten())
        t = own(x)
        if t is None:
            return DualValue(y, None, fresh=True)
        return DualValue.of_stack(torch.cat([y, t.expand_as(y)]), y.shape[0], fresh=True)
    rows = value.rows
    out = apply(value.stack(), None)
    if bias is not None:
        out[:rows].add_(bias)
    t = own(x)
    if t is not None:
        out[rows:].add_(t)
    return DualValue.of_stack(out, rows, fresh=True)


def _conv2d(
    m: nn.Conv2d, value: DualValue, _: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    if value.primal.dim() != 4:
        return None  # unbatched input: dim 0 is not the batch
    dw, db = d.get("weight"), d.get("bias")

    def apply(inp: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return conv2d_apply(m, inp, m.weight, b)

    def own(x: torch.Tensor) -> Tangent:
        if dw is not None:
            return conv2d_apply(m, x, dw, db)
        return db.view(-1, 1, 1) if db is not None else None

    bias = m.bias.view(-1, 1, 1) if m.bias is not None else None
    return affine_stacked(value, apply, bias, own)


def _linear(
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


def relu_stacked(value: DualValue, single_user: bool) -> DualValue | None:
    if value.primal.dim() == 0:
        return None
    if value.tangent is None:
        x = value.primal
        return DualValue(
            x.relu_() if _owned(value, single_user) else torch.relu(x), None, fresh=True
        )
    rows = value.rows
    z = value.stack()
    x, t = z[:rows], z[rows:]
    if _owned(value, single_user):
        torch.ops.aten.threshold_backward.grad_input(t, x, 0, grad_input=t)
        x.relu_()
        return value
    out = torch.empty_like(z)
    torch.ops.aten.threshold_backward.grad_input(t, x, 0, grad_input=out[rows:])
    torch.clamp_min(x, 0, out=out[:rows])  # = relu
    return DualValue.of_stack(out, rows, fresh=True)


def _relu(
    _: nn.Module, value: DualValue, single_user: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    return relu_stacked(value, single_user)


def batchwise_stacked(
    value: DualValue, apply: Callable[[torch.Tensor], torch.Tensor]
) -> DualValue | None:
    """An op linear in its input that treats each slice along dim 0 on its own: apply it to z."""
    if value.primal.dim() == 0:
        return None
    if value.tangent is None:
        return DualValue(apply(value.primal), None)
    rows = value.rows
    return DualValue.of_stack(apply(value.stack()), rows, fresh=False)


def _batchwise_module(
    m: nn.Module, value: DualValue, _: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    return batchwise_stacked(value, m)


def _flatten(
    m: nn.Flatten, value: DualValue, _: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    return batchwise_stacked(value, m) if m.start_dim >= 1 else None


def _identity(
    _: nn.Module, value: DualValue, __: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    return DualValue(value.primal, value.tangent, stacked=value.stacked)


def add_stacked(
    a: DualValue, b: DualValue, single_user_a: bool, single_user_b: bool
) -> DualValue | None:
    """a + b for two values of the same shape (None otherwise: broadcasting along dim 0
    would mix the halves)."""
    if a.primal.shape != b.primal.shape or a.primal.dim() == 0:
        return None
    if a.tangent is None and b.tangent is None:
        if _owned(a, single_user_a):
            return DualValue(a.primal.add_(b.primal), None, fresh=True)
        return DualValue(a.primal + b.primal, None, fresh=True)
    if a.tangent is None:
        a, b, single_user_a = b, a, single_user_b  # addition commutes exactly
    rows = a.rows
    za = a.stack()
    if b.tangent is None:
        out = za if _owned(a, single_user_a) else za.clone()
        out[:rows].add_(b.primal)
    else:
        zb = b.stack()
        out = za.add_(zb) if _owned(a, single_user_a) else za + zb
    return DualValue.of_stack(out, rows, fresh=True)


STACKED_MODULE_RULES: Mapping[type[nn.Module], StackedRule] = {
    nn.Conv2d: _conv2d,
    nn.Linear: _linear,
    nn.ReLU: _relu,
    nn.AdaptiveAvgPool2d: _batchwise_module,
    nn.AvgPool2d: _batchwise_module,
    nn.ZeroPad2d: _batchwise_module,
    nn.Flatten: _flatten,
    nn.Identity: _identity,
    nn.Dropout: _identity,
}
"""Module types with a stacked rule; other modules use their pair rule on the two halves."""
