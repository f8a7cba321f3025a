"""Pooling and padding.

* max-pool: the tangent is gathered at the primal's arg-max positions (no stacked form:
  the positions come from the primal half alone).
* average pooling and zero padding: linear maps that treat each example on their own, so
  the stacked form runs them once on [x; t].
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tmc.common.tangent.dual import Dual, Tangent
from tmc.common.tangent.ops.linear_map import batchwise_module, linear_module, linear_steps
from tmc.common.tangent.ops.rule import OpRule


def _max_pool2d(
    m: nn.MaxPool2d, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]
) -> Dual:
    if t is None:
        return m(x), None
    y, idx = F.max_pool2d(
        x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True
    )
    return y, t.flatten(2).gather(2, idx.flatten(2)).view_as(y)


MAX_POOL2D = OpRule("max_pool2d", _max_pool2d, modules=(nn.MaxPool2d,))
AVG_POOL2D = OpRule(
    "avg_pool2d",
    linear_module,
    batchwise_module,
    modules=(nn.AdaptiveAvgPool2d, nn.AvgPool2d),
    functions=(F.adaptive_avg_pool2d, F.avg_pool2d),
    node_steps=linear_steps(True),
)
ZERO_PAD2D = OpRule("zero_pad2d", linear_module, batchwise_module, modules=(nn.ZeroPad2d,))
