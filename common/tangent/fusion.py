"""conv → eval-mode BatchNorm folded into one affine conv, in the primal and tangent paths.

With s = γ0/σ and u = conv(x; W0) + b0, the BN output y = (u − μ)·s + β0 and its tangent

    ẏ = conv(t; W0·s) + conv(x; ΔW·s + W0·Δγ/σ) + [Δb·s + (b0 − μ)·Δγ/σ + Δβ]

so the pair costs the same convolutions as the conv alone and no normalisation pass at all.
The folded weights W0·s and the folded bias are computed once from θ0; the Δ-dependent ones
are cheap weight-space ops done per forward (and differentiated through in training).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import TangentError
from common.tangent.rules import Dual, Tangent, add_tangents


class FusedConvBatchNorm(nn.Module):
    """One conv-BN pair of the base network, folded (buffers follow ``.to(device)``)."""

    weight: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor
    inv_std: torch.Tensor
    centre: torch.Tensor

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros":
            raise TangentError(f"Conv2d with padding_mode={conv.padding_mode!r} is not supported")
        if bn.running_mean is None or bn.running_var is None:
            raise TangentError("BatchNorm without running statistics cannot be linearised")
        with torch.no_grad():
            inv_std = torch.rsqrt(bn.running_var + bn.eps)
            scale = inv_std * bn.weight if bn.weight is not None else inv_std
            conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            centre = conv_bias - bn.running_mean
            shift = bn.bias if bn.bias is not None else torch.zeros_like(scale)
            self.register_buffer("weight", conv.weight * scale.view(-1, 1, 1, 1), persistent=False)
            self.register_buffer("bias", centre * scale + shift, persistent=False)
            self.register_buffer("scale", scale.clone(), persistent=False)
            self.register_buffer("inv_std", inv_std, persistent=False)
            self.register_buffer("centre", centre, persistent=False)
        # Not registered: the conv belongs to the base network, which moves it in place.
        self._source = (conv,)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        conv = self._source[0]
        return F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)

    def dual(
        self,
        x: torch.Tensor,
        t: Tangent,
        conv_delta: Mapping[str, torch.Tensor],
        bn_delta: Mapping[str, torch.Tensor],
    ) -> Dual:
        y = self._conv(x, self.weight, self.bias)
        through = self._conv(t, self.weight, None) if t is not None else None
        dw, db = conv_delta.get("weight"), conv_delta.get("bias")
        dgamma, dbeta = bn_delta.get("weight"), bn_delta.get("bias")
        kernel: torch.Tensor | None = None
        shift: torch.Tensor | None = None
        if dw is not None:
            kernel = dw * self.scale.view(-1, 1, 1, 1)
        if db is not None:
            shift = db * self.scale
        if dgamma is not None:
            ratio = dgamma * self.inv_std
            w0 = self._source[0].weight
            kernel = (
                w0 * ratio.view(-1, 1, 1, 1)
                if kernel is None
                else torch.addcmul(kernel, w0, ratio.view(-1, 1, 1, 1))
            )
            shift = self.centre * ratio if shift is None else torch.addcmul(shift, self.centre, ratio)
        if dbeta is not None:
            shift = dbeta if shift is None else shift + dbeta
        if kernel is not None:
            own: Tangent = self._conv(x, kernel, shift)
        elif shift is not None:
            own = shift.view(1, -1, 1, 1).expand_as(y)
        else:
            own = None
        if through is not None and own is not None:
            return y, through.add_(own)  # conv outputs are not saved for backward: in place is safe
        return y, add_tangents(through, own)
