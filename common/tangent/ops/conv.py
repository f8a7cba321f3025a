"""Conv2d: y = conv(x; W0, b0),  ẏ = conv(t; W0) + conv(x; ΔW, Δb).

Stacked: conv(·; W0) runs once on [x; t]; b0 goes to the primal half, conv(x; ΔW, Δb) to
the tangent half. Only zero padding is supported (the other modes are not linear maps that
``F.conv2d`` expresses with the same weights)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import Dual, DualValue, Tangent
from tmc.common.tangent.ops.rule import OpRule, add_tangents, affine_stacked


def conv2d_apply(
    m: nn.Conv2d, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
) -> torch.Tensor:
    """``m``'s convolution with weights ``w`` and bias ``b`` (zero padding only)."""
    if m.padding_mode != "zeros":
        raise TangentError(f"Conv2d with padding_mode={m.padding_mode!r} is not supported")
    return F.conv2d(x, w, b, m.stride, m.padding, m.dilation, m.groups)


def _pair(m: nn.Conv2d, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
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


def _stacked(
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


CONV2D = OpRule("conv2d", _pair, _stacked, modules=(nn.Conv2d,), reads_delta=True)
