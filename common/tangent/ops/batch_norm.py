"""Eval-mode BatchNorm: y = x̂·γ0 + β0,  ẏ = t·γ0/σ + x̂·Δγ + Δβ  (x̂ = (x − μ)/σ).

Always in eval mode: batch statistics would make the output depend on the batch and break
linearity in Δ. No stacked form: the pair runs on the two halves (and a BN right after a
conv is folded into it, ``tmc.common.tangent.fusion``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import Dual, Tangent
from tmc.common.tangent.ops.rule import OpRule, add_tangents


def _pair(
    m: nn.modules.batchnorm._BatchNorm,
    x: torch.Tensor,
    t: Tangent,
    d: Mapping[str, torch.Tensor],
) -> Dual:
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


BATCH_NORM = OpRule("batch_norm", _pair, modules=(nn.BatchNorm1d, nn.BatchNorm2d), reads_delta=True)
