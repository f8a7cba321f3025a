"""What a compiled step reads from the traced graph, and how it runs.

A step maps the environment (graph node name → :class:`~tmc.common.tangent.dual.DualValue`)
and Δ (base parameter name → tensor) to the value of its own node. The helpers here read a
node's activation arguments and decide when a step may overwrite its input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import fx

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import DualValue

Env = dict[str, DualValue]
DeltaLookup = Mapping[str, torch.Tensor]
StepFn = Callable[[Env, DeltaLookup], DualValue]
StepForms = tuple[StepFn, StepFn]
"""A node's (pair, stacked) forms: with autograd, and on [x; t] without it."""


def primal_args(
    arg: fx.node.Argument, env: Env, replace: tuple[str, torch.Tensor] | None = None
) -> fx.node.Argument:
    """``arg`` with each graph node replaced by its primal value (or by ``replace``'s tensor
    for the node it names: how a linear op is applied to a tangent)."""

    def value(node: fx.Node) -> torch.Tensor:
        if replace is not None and node.name == replace[0]:
            return replace[1]
        return env[node.name].primal

    return fx.node.map_arg(arg, value)


def input_nodes(arg: fx.node.Argument) -> list[fx.Node]:
    """The graph nodes ``arg`` reads, in order, with repetitions."""
    found: list[fx.Node] = []

    def note(node: fx.Node) -> fx.Node:
        found.append(node)
        return node

    fx.node.map_arg(arg, note)
    return found


def single_input(node: fx.Node) -> str:
    """The name of the one activation a node is called on (no keyword arguments)."""
    (arg,) = node.args
    if not isinstance(arg, fx.Node) or node.kwargs:
        raise TangentError(f"{node.name} must be called on a single activation")
    return arg.name


def sole_consumer(node: fx.node.Argument, user: fx.Node) -> bool:
    """``user`` is the only reader of ``node`` (and reads it once): it may overwrite it."""
    if not isinstance(node, fx.Node) or node.op == "placeholder" or set(node.users) != {user}:
        return False
    reads = input_nodes(user.args) + input_nodes(user.kwargs)
    return reads.count(node) == 1


def with_fallback(pair: StepFn, stacked: Callable[[Env, DeltaLookup], DualValue | None]) -> StepFn:
    """The stacked form, or the pair form where the stacked one declines (returns None)."""

    def run(env: Env, delta: DeltaLookup) -> DualValue:
        out = stacked(env, delta)
        return pair(env, delta) if out is None else out

    return run
