"""conv → eval-mode BatchNorm folded into one affine conv, in the primal and tangent paths.

With s = γ0/σ, u = conv(x; W0) + b0 − μ and r = Δγ/σ, the BN output y = u·s + β0 and its
tangent is

    ẏ = conv(t; W0·s) + conv(x; ΔW)·s + u·r + Δb·s + Δβ                       (activation side)
      = conv(t; W0·s) + conv(x; K) + c,   K = ΔW·s + W0·r,  c = Δb·s + (b0 − μ)·r + Δβ
                                                                             (weight side)

so the pair costs the same convolutions as the conv alone and no normalisation pass. W0·s
and the folded bias are computed once from θ0. Where Δ needs no gradient (inference), K and
c are computed once per Δ and cached. Where it does (training), the side that touches fewer
numbers is taken: weight-sized products (and their backward) cost more than activation-sized
ones once the activations are smaller than the weights (the deep, low-resolution stages).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import torch
from torch import nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import Dual, DualValue, Tangent
from tmc.common.tangent.ops.conv import conv2d_apply
from tmc.common.tangent.ops.rule import affine_stacked

_Stamp = tuple[tuple[weakref.ref[torch.Tensor], int, int] | None, ...]


def _stamp(tensors: tuple[Tangent, ...]) -> _Stamp:
    """Identity, in-place version and storage of each tensor: while they are unchanged, so
    are the values (short of writes through ``.data``, which autograd does not see either)."""
    return tuple(None if t is None else (weakref.ref(t), t._version, t.data_ptr()) for t in tensors)


def _same(stamp: _Stamp, tensors: tuple[Tangent, ...]) -> bool:
    if len(stamp) != len(tensors):
        return False
    for mark, t in zip(stamp, tensors, strict=True):
        if mark is None or t is None:
            if mark is not None or t is not None:
                return False
        elif mark[0]() is not t or mark[1] != t._version or mark[2] != t.data_ptr():
            return False
    return True


class FusedConvBatchNorm(nn.Module):
    """One conv-BN pair of the base network, folded (buffers follow ``.to(device)``)."""

    weight: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor
    inv_std: torch.Tensor
    centre: torch.Tensor
    shift0: torch.Tensor

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
            self.register_buffer("shift0", shift.clone(), persistent=False)
        # Not registered: the conv belongs to the base network, which moves it in place.
        self._source = (conv,)
        # Output elements per input element (a cost estimate only: which side is cheaper).
        stride = conv.stride[0] * conv.stride[1]
        self._growth = conv.out_channels / (conv.in_channels * stride)
        self._cache: tuple[_Stamp, torch.Tensor | None, torch.Tensor | None] | None = None

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return conv2d_apply(self._source[0], x, w, b)

    def _kernel(
        self, dw: Tangent, db: Tangent, dgamma: Tangent, dbeta: Tangent
    ) -> tuple[Tangent, Tangent]:
        """K = ΔW·s + W0·r and c = Δb·s + (b0 − μ)·r + Δβ (None where zero)."""
        kernel: Tangent = None
        shift: Tangent = None
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
            shift = (
                self.centre * ratio if shift is None else torch.addcmul(shift, self.centre, ratio)
            )
        if dbeta is not None:
            shift = dbeta if shift is None else shift + dbeta
        return kernel, shift

    def delta_kernel(self, *deltas: Tangent) -> tuple[Tangent, Tangent]:
        """(K, c) for (ΔW, Δb, Δγ, Δβ); cached while none of them needs a gradient (a cached
        pair is reused only for the very same tensors at the same in-place version)."""
        if torch.is_grad_enabled() and any(d is not None and d.requires_grad for d in deltas):
            return self._kernel(*deltas)
        cache = self._cache  # read once: another thread may replace it
        if cache is not None and _same(cache[0], deltas):
            return cache[1], cache[2]
        with torch.no_grad():
            kernel, shift = self._kernel(*deltas)
        self._cache = (_stamp(deltas), kernel, shift)
        return kernel, shift

    @staticmethod
    def _deltas(
        conv_delta: Mapping[str, torch.Tensor], bn_delta: Mapping[str, torch.Tensor]
    ) -> tuple[Tangent, Tangent, Tangent, Tangent]:
        return (
            conv_delta.get("weight"),
            conv_delta.get("bias"),
            bn_delta.get("weight"),
            bn_delta.get("bias"),
        )

    def dual(
        self,
        x: torch.Tensor,
        t: Tangent,
        conv_delta: Mapping[str, torch.Tensor],
        bn_delta: Mapping[str, torch.Tensor],
    ) -> Dual:
        """(y, ẏ) as two tensors: the path autograd differentiates (in ẏ only)."""
        deltas = self._deltas(conv_delta, bn_delta)
        dw, dgamma = deltas[0], deltas[2]
        needs_grad = torch.is_grad_enabled() and any(
            d is not None and d.requires_grad for d in deltas
        )
        weights = self._source[0].weight.numel()
        if not needs_grad or x.numel() * self._growth >= weights or (dw is None and dgamma is None):
            y = self._conv(x, self.weight, self.bias)
            kernel, shift = self.delta_kernel(*deltas)
            through = self._conv(t, self.weight, None) if t is not None else None
            if kernel is not None:
                own = self._conv(x, kernel, shift)
                return y, (through.add_(own) if through is not None else own)
            if shift is not None:
                view = shift.view(-1, 1, 1)
                return y, (through.add_(view) if through is not None else view.expand_as(y))
            return y, through
        return self._activation_side(x, t, deltas)

    def _activation_side(
        self, x: torch.Tensor, t: Tangent, deltas: tuple[Tangent, Tangent, Tangent, Tangent]
    ) -> Dual:
        """ẏ = conv(t; W0·s) + conv(x; ΔW)·s + u·r + Δb·s + Δβ: no weight-sized product."""
        dw, db, dgamma, dbeta = deltas
        s = self.scale.view(-1, 1, 1)
        if dgamma is not None:
            u = self._conv(x, self._source[0].weight, self.centre)
            y = torch.addcmul(self.shift0.view(-1, 1, 1), u, s)
        else:
            y = self._conv(x, self.weight, self.bias)
        # In place only on fresh conv outputs (convolution saves its inputs, not its output).
        acc: Tangent = self._conv(t, self.weight, None) if t is not None else None
        if dw is not None:
            own = self._conv(x, dw, None)
            acc = own.mul_(s) if acc is None else acc.addcmul_(own, s)
        if dgamma is not None:
            ratio = (dgamma * self.inv_std).view(-1, 1, 1)
            acc = u * ratio if acc is None else acc.addcmul_(u, ratio)
        shift = db * self.scale if db is not None else None
        if dbeta is not None:
            shift = dbeta if shift is None else shift + dbeta
        if shift is not None:
            acc = (
                shift.view(-1, 1, 1).expand_as(y) if acc is None else acc.add_(shift.view(-1, 1, 1))
            )
        return y, acc

    def stacked(
        self,
        value: DualValue,
        conv_delta: Mapping[str, torch.Tensor],
        bn_delta: Mapping[str, torch.Tensor],
    ) -> DualValue | None:
        """The no-grad path on z = [x; t] (``ops.rule.affine_stacked``), with cached K, c."""
        if value.primal.dim() != 4:
            return None
        kernel, shift = self.delta_kernel(*self._deltas(conv_delta, bn_delta))

        def apply(inp: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            return self._conv(inp, self.weight, b)

        def own(x: torch.Tensor) -> Tangent:
            if kernel is not None:
                return self._conv(x, kernel, shift)
            return shift.view(-1, 1, 1) if shift is not None else None

        return affine_stacked(value, apply, self.bias.view(-1, 1, 1), own)
