"""Dual-path (primal, tangent) rules, one per operation, as in the reference TMC layers.

Each rule maps the primal input ``x`` and its tangent ``t`` (the directional derivative of
that activation along Δ; ``None`` means exactly zero) to the primal output and its tangent.
For a layer with parameters θ0 and tangent parameters Δ:

* conv / linear:  y = op(x; W0, b0),   ẏ = op(t; W0) + op(x; ΔW, Δb)
* eval-mode BN:   y = x̂·γ0 + β0,       ẏ = t·γ0/σ + x̂·Δγ + Δβ     (x̂ = (x − μ)/σ)
* ReLU:           y = max(x, 0),       ẏ = t·1[x > 0]   (``threshold_backward``: one pass, as
                  autograd's own ReLU rule, and differentiable in t with the same mask)
* ReLU6:          y = min(max(x, 0), 6), ẏ = t·1[0 < x < 6]   (``hardtanh_backward``, as
                  autograd's; EfficientNet-Lite and MobileNetV2 use it)
* max-pool:       the tangent is gathered at the primal arg-max positions
* linear ops (pooling, flatten, reshape, add): the same op applied to the tangent

(docs/design/method.md; Liu & Soatto, ICCV 2023, and tianyu139/tangent-model-composition
``models/linear_layers.py``). A ``None`` tangent skips the work: below the first tangent
layer the network runs once, plainly, and the first tangent layer costs two ops, not three.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import Dual, Tangent

ModuleRule = Callable[[Any, torch.Tensor, Tangent, Mapping[str, torch.Tensor]], Dual]


def add_tangents(*tangents: Tangent) -> Tangent:
    """Sum of tangents where ``None`` is zero (and the sum of only zeros stays ``None``)."""
    present = [t for t in tangents if t is not None]
    if not present:
        return None
    total = present[0]
    for t in present[1:]:
        total = total + t
    return total


def conv2d_apply(
    m: nn.Conv2d, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
) -> torch.Tensor:
    """``m``'s convolution with weights ``w`` and bias ``b`` (zero padding only)."""
    if m.padding_mode != "zeros":
        raise TangentError(f"Conv2d with padding_mode={m.padding_mode!r} is not supported")
    return F.conv2d(x, w, b, m.stride, m.padding, m.dilation, m.groups)


def linear_apply(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, w, b)


def _conv2d(m: nn.Conv2d, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    y = conv2d_apply(m, x, m.weight, m.bias)
    through_w0 = conv2d_apply(m, t, m.weight, None) if t is not None else None
    dw, db = d.get("weight"), d.get("bias")
    if dw is not None:
        own: Tangent = conv2d_apply(m, x, dw, db)
    elif db is not None:
        own = db.view(1, -1, 1, 1).expand_as(y)
    else:
        own = None
    if through_w0 is not None and own is not None and dw is not None:
        return y, through_w0.add_(own)  # conv outputs are not saved for backward
    return y, add_tangents(through_w0, own)


def _linear(m: nn.Linear, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
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


def _batch_norm(
    m: nn.modules.batchnorm._BatchNorm,
    x: torch.Tensor,
    t: Tangent,
    d: Mapping[str, torch.Tensor],
) -> Dual:
    # Always eval mode: batch statistics would make the output depend on the batch and
    # break linearity in Δ (docs/design/method.md).
    if m.running_mean is None or m.running_var is None:
        raise TangentError("BatchNorm without running statistics cannot be linearised")
    mean, var = m.running_mean, m.running_var
    y = F.batch_norm(x, mean, var, m.weight, m.bias, training=False, momentum=0.0, eps=m.eps)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    through = None
    if t is not None:
        inv_std = torch.rsqrt(var + m.eps)
        scale = inv_std * m.weight if m.weight is not None else inv_std
        through = t * scale.view(shape)
    dg, db = d.get("weight"), d.get("bias")
    if dg is not None:
        own: Tangent = F.batch_norm(x, mean, var, dg, db, training=False, momentum=0.0, eps=m.eps)
    elif db is not None:
        own = db.view(shape).expand_as(y)
    else:
        own = None
    return y, add_tangents(through, own)


def relu_tangent(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t·1[x > 0] in one pass (no mask tensor)."""
    return torch.ops.aten.threshold_backward(t, x, 0)


def _relu(_: nn.Module, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    return torch.relu(x), (relu_tangent(t, x) if t is not None else None)


def _relu6(_: nn.Module, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    y = F.relu6(x)
    return y, (torch.ops.aten.hardtanh_backward(t, x, 0.0, 6.0) if t is not None else None)


def _max_pool2d(
    m: nn.MaxPool2d, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]
) -> Dual:
    if t is None:
        return m(x), None
    y, idx = F.max_pool2d(
        x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True
    )
    return y, t.flatten(2).gather(2, idx.flatten(2)).view_as(y)


def _linear_module(
    m: nn.Module, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]
) -> Dual:
    """Modules that are linear maps of their input and have no parameters."""
    return m(x), (m(t) if t is not None else None)


def _dropout(_: nn.Module, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    return x, t  # eval mode: the identity


MODULE_RULES: Mapping[type[nn.Module], ModuleRule] = {
    nn.Conv2d: _conv2d,
    nn.Linear: _linear,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.ReLU: _relu,
    nn.ReLU6: _relu6,
    nn.MaxPool2d: _max_pool2d,
    nn.AdaptiveAvgPool2d: _linear_module,
    nn.AvgPool2d: _linear_module,
    nn.Flatten: _linear_module,
    nn.Identity: _linear_module,
    nn.ZeroPad2d: _linear_module,
    nn.Dropout: _dropout,
}

PARAMETER_RULES: frozenset[type[nn.Module]] = frozenset(
    {nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d}
)
"""Module types whose own parameters may be tangent (their rules read Δ)."""


def module_rule(module: nn.Module) -> ModuleRule:
    """The rule for a module's exact type, or a TangentError naming what is supported."""
    rule = MODULE_RULES.get(type(module))
    if rule is None:
        supported = ", ".join(sorted(k.__name__ for k in MODULE_RULES))
        raise TangentError(
            f"no tangent rule for module type {type(module).__name__}; supported: {supported}"
        )
    return rule


# Functions applied to activations. ``linear`` ones are applied to the tangent as they are;
# ``additive`` ones add their tangent inputs; ``relu`` is piecewise linear.
LINEAR_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {torch.flatten, torch.reshape, F.adaptive_avg_pool2d, F.avg_pool2d}
)
ADDITIVE_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {operator.add, operator.iadd, torch.add}
)
BATCHWISE_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {F.adaptive_avg_pool2d, F.avg_pool2d}
)
"""Linear functions that treat each slice along dim 0 on their own (run on [x; t] at once)."""
BATCHWISE_METHODS: frozenset[str] = frozenset({"contiguous"})
FLATTENS: frozenset[object] = frozenset({torch.flatten, "flatten"})
"""Flatten as a function or a method: it keeps dim 0 apart when it starts at dim ≥ 1."""
RELU_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({F.relu, torch.relu, torch.relu_})
LINEAR_METHODS: frozenset[str] = frozenset({"flatten", "view", "reshape", "contiguous"})
