"""Operations that are linear maps of their one activation and have no parameters
(pooling, padding, flatten, reshape, identity): the same op applied to the tangent.

Stacked: an op that treats each slice along dim 0 on its own runs once on [x; t]; the
others run on the two halves. Functions and methods take their activation among other
arguments (``x.view(n, -1)``, ``F.avg_pool2d(x, 2)``), so their forms are built from the
graph node (``linear_node_steps``), with the activation swapped for the tangent."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import fx, nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import Dual, DualValue, Tangent
from tmc.common.tangent.graph import (
    DeltaLookup,
    Env,
    StepForms,
    input_nodes,
    primal_args,
    with_fallback,
)

NodeCall = Callable[[tuple[object, ...], dict[str, object]], torch.Tensor]


def linear_module(m: nn.Module, x: torch.Tensor, t: Tangent, d: Mapping[str, torch.Tensor]) -> Dual:
    """Pair form of a parameter-free module that is a linear map of its input."""
    return m(x), (m(t) if t is not None else None)


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


def batchwise_module(
    m: nn.Module, value: DualValue, _: bool, d: Mapping[str, torch.Tensor]
) -> DualValue | None:
    """Stacked form of a parameter-free module that treats each example on its own."""
    return batchwise_stacked(value, m)


def linear_node_steps(node: fx.Node, apply: NodeCall, keeps_dim0: bool) -> StepForms:
    """Both forms of a function or method node linear in its single activation argument;
    ``keeps_dim0``: it treats each slice along dim 0 on its own (runs on [x; t] at once)."""
    inputs = input_nodes(node.args) + input_nodes(node.kwargs)
    if len(inputs) != 1:
        raise TangentError(f"{node.name}: a linear op must take exactly one activation")
    source = inputs[0].name
    args, kwargs = node.args, node.kwargs

    def call(env: Env, swap: tuple[str, torch.Tensor] | None = None) -> torch.Tensor:
        return apply(primal_args(args, env, swap), primal_args(kwargs, env, swap))  # type: ignore[arg-type]

    def run(env: Env, _: DeltaLookup) -> DualValue:
        primal = call(env)
        t = env[source].tangent
        if t is None:
            return DualValue(primal, None)
        return DualValue(primal, call(env, (source, t)))

    if not keeps_dim0:
        return run, run

    def stacked(env: Env, _: DeltaLookup) -> DualValue | None:
        return batchwise_stacked(env[source], lambda z: call(env, (source, z)))

    return run, with_fallback(run, stacked)


def linear_steps(keeps_dim0: Callable[[fx.Node], bool] | bool) -> Callable[[fx.Node], StepForms]:
    """``node_steps`` of a linear function (the node's target called on its arguments) or
    tensor method (called on its first argument); ``keeps_dim0`` as in ``linear_node_steps``,
    fixed or decided from the node (flatten: from which dim)."""

    def build(node: fx.Node) -> StepForms:
        keeps = keeps_dim0(node) if callable(keeps_dim0) else keeps_dim0
        target = node.target
        if node.op == "call_method":
            method = str(target)
            return linear_node_steps(node, lambda a, k: getattr(a[0], method)(*a[1:], **k), keeps)
        return linear_node_steps(node, lambda a, k: target(*a, **k), keeps)  # type: ignore[operator]

    return build
