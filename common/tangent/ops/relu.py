"""ReLU and ReLU6, the piecewise-linear activations.

* ReLU:  y = max(x, 0),  ẏ = t·1[x > 0]  (``threshold_backward``: one pass, as autograd's
  own ReLU rule, and differentiable in t with the same mask). Stacked: both halves in
  place, the tangent first (the mask is the same before and after: max(x, 0) > 0 ⟺ x > 0).
* ReLU6: y = min(max(x, 0), 6),  ẏ = t·1[0 < x < 6]  (``hardtanh_backward``, as autograd's;
  EfficientNet-Lite and MobileNetV2 use it).

An in-place ReLU also changes its input for every other reader, which the graph does not
show: it is refused unless it is its input's only reader.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import fx, nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import Dual, DualValue, Tangent
from tmc.common.tangent.ops.rule import OpRule, owned


def relu_tangent(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t·1[x > 0] in one pass (no mask tensor)."""
    return torch.ops.aten.threshold_backward(t, x, 0)


def _relu_source(node: fx.Node, module: nn.Module | None) -> str:
    inplace = bool(getattr(module, "inplace", False)) or node.target is torch.relu_
    (arg,) = node.args
    extra = set(node.kwargs) - {"inplace"}
    if not isinstance(arg, fx.Node) or extra:
        raise TangentError(f"{node.name} must be called on a single activation")
    if (inplace or node.kwargs.get("inplace")) and len(arg.users) > 1:
        raise TangentError(f"{node.name}: an in-place ReLU on an activation read elsewhere")
    return arg.name


def _relu(_: nn.Module | None, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    return torch.relu(x), (relu_tangent(t, x) if t is not None else None)


def _relu_stacked(
    _: nn.Module | None, value: DualValue, single_user: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    if value.primal.dim() == 0:
        return None
    if value.tangent is None:
        x = value.primal
        return DualValue(
            x.relu_() if owned(value, single_user) else torch.relu(x), None, fresh=True
        )
    rows = value.rows
    z = value.stack()
    x, t = z[:rows], z[rows:]
    if owned(value, single_user):
        torch.ops.aten.threshold_backward.grad_input(t, x, 0, grad_input=t)
        x.relu_()
        return value
    out = torch.empty_like(z)
    torch.ops.aten.threshold_backward.grad_input(t, x, 0, grad_input=out[rows:])
    torch.clamp_min(x, 0, out=out[:rows])  # = relu
    return DualValue.of_stack(out, rows, fresh=True)


def _relu6(_: nn.Module, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    y = F.relu6(x)
    return y, (torch.ops.aten.hardtanh_backward(t, x, 0.0, 6.0) if t is not None else None)


RELU = OpRule(
    "relu",
    _relu,
    _relu_stacked,
    modules=(nn.ReLU,),
    functions=(F.relu, torch.relu, torch.relu_),
    source=_relu_source,
)
RELU6 = OpRule("relu6", _relu6, modules=(nn.ReLU6,))
