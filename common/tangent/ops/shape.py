"""Shape operations and the identities: flatten, reshape/view, contiguous, Identity and
eval-mode Dropout. All are linear; the tangent takes the same op.

Flatten from dim ≥ 1 and ``contiguous`` keep dim 0 apart, so their stacked form runs on
[x; t] at once; a reshape may mix the batch rows, so it runs on the two halves."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import fx, nn

from tmc.common.tangent.dual import Dual, DualValue, Tangent
from tmc.common.tangent.ops.linear_map import (
    batchwise_stacked,
    linear_module,
    linear_steps,
)
from tmc.common.tangent.ops.rule import OpRule


def _flatten_keeps_dim0(node: fx.Node) -> bool:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    return isinstance(start, int) and start >= 1


def _flatten_stacked(
    m: nn.Flatten, value: DualValue, _: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    return batchwise_stacked(value, m) if m.start_dim >= 1 else None


def _same_stacked(
    _: nn.Module, value: DualValue, __: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    return DualValue(value.primal, value.tangent, stacked=value.stacked)


def _dropout(_: nn.Module, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    return x, t  # eval mode: the identity


FLATTEN = OpRule(
    "flatten",
    linear_module,
    _flatten_stacked,
    modules=(nn.Flatten,),
    functions=(torch.flatten,),
    methods=("flatten",),
    node_steps=linear_steps(_flatten_keeps_dim0),
)
RESHAPE = OpRule(
    "reshape",
    functions=(torch.reshape,),
    methods=("view", "reshape"),
    node_steps=linear_steps(False),
)
CONTIGUOUS = OpRule("contiguous", methods=("contiguous",), node_steps=linear_steps(True))
IDENTITY = OpRule("identity", linear_module, _same_stacked, modules=(nn.Identity,))
DROPOUT = OpRule("dropout", _dropout, _same_stacked, modules=(nn.Dropout,))
