"""Addition of activations (residual connections): ẏ = ṫa + ṫb.

Stacked, for two values of the same shape: [xa; ta] + [xb; tb] in one pass, in place when
the left value is fresh and this is its only reader; a value without tangent adds to the
primal half only. Broadcasting along dim 0 would mix the halves: it runs on the pair."""

from __future__ import annotations

import operator

import torch
from torch import fx

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import DualValue
from tmc.common.tangent.graph import (
    DeltaLookup,
    Env,
    StepForms,
    input_nodes,
    primal_args,
    sole_consumer,
    with_fallback,
)
from tmc.common.tangent.ops.rule import OpRule, add_tangents, owned


def add_stacked(
    a: DualValue, b: DualValue, single_user_a: bool, single_user_b: bool
) -> DualValue | None:
    """a + b for two values of the same shape (None otherwise)."""
    if a.primal.shape != b.primal.shape or a.primal.dim() == 0:
        return None
    if a.tangent is None and b.tangent is None:
        if owned(a, single_user_a):
            return DualValue(a.primal.add_(b.primal), None, fresh=True)
        return DualValue(a.primal + b.primal, None, fresh=True)
    if a.tangent is None:
        a, b, single_user_a = b, a, single_user_b  # addition commutes exactly
    rows = a.rows
    za = a.stack()
    if b.tangent is None:
        out = za if owned(a, single_user_a) else za.clone()
        out[:rows].add_(b.primal)
    else:
        zb = b.stack()
        out = za.add_(zb) if owned(a, single_user_a) else za + zb
    return DualValue.of_stack(out, rows, fresh=True)


def _steps(node: fx.Node) -> StepForms:
    fn = node.target
    args, kwargs = node.args, node.kwargs
    if kwargs:
        raise TangentError(f"{node.name}: {fn} with keyword arguments is not supported")
    sources = [a.name for a in input_nodes(args)]

    def run_add(env: Env, _: DeltaLookup) -> DualValue:
        primal = fn(*primal_args(args, env))  # type: ignore[misc, operator]
        return DualValue(primal, add_tangents(*(env[s].tangent for s in sources)))

    first, second = args if len(args) == 2 else (None, None)
    if not isinstance(first, fx.Node) or not isinstance(second, fx.Node):
        return run_add, run_add
    a, b = first.name, second.name
    single_a, single_b = sole_consumer(first, node), sole_consumer(second, node)

    def stacked_add(env: Env, _: DeltaLookup) -> DualValue | None:
        return add_stacked(env[a], env[b], single_a, single_b)

    return run_add, with_fallback(run_add, stacked_add)


# ``a += b`` traces as operator.add (an fx proxy has no ``__iadd__``), so that one covers it.
ADD = OpRule("add", functions=(operator.add, torch.add), node_steps=_steps)
