"""Every tangent rule, and the lookups the compiler uses (by module type, function, method).

To support a new operation, write its rule (``tmc.common.tangent.ops.rule.OpRule``) in a
module of this package and add it to ``RULES``: the compiler, the per-rule tests and the
error messages that list what is supported all read this one table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from torch import nn

from tmc.common.errors import TangentError
from tmc.common.tangent.ops.add import ADD
from tmc.common.tangent.ops.batch_norm import BATCH_NORM
from tmc.common.tangent.ops.conv import CONV2D
from tmc.common.tangent.ops.linear import LINEAR
from tmc.common.tangent.ops.pooling import AVG_POOL2D, MAX_POOL2D, ZERO_PAD2D
from tmc.common.tangent.ops.relu import RELU, RELU6
from tmc.common.tangent.ops.rule import OpRule
from tmc.common.tangent.ops.shape import CONTIGUOUS, DROPOUT, FLATTEN, IDENTITY, RESHAPE

RULES: tuple[OpRule, ...] = (
    ADD,
    AVG_POOL2D,
    BATCH_NORM,
    CONTIGUOUS,
    CONV2D,
    DROPOUT,
    FLATTEN,
    IDENTITY,
    LINEAR,
    MAX_POOL2D,
    RELU,
    RELU6,
    RESHAPE,
    ZERO_PAD2D,
)


def _index(targets: list[tuple[object, OpRule]]) -> Mapping[Any, OpRule]:
    found: dict[object, OpRule] = {}
    for target, rule in targets:
        if target in found:
            raise TangentError(f"{target} has two tangent rules: {found[target].name}, {rule.name}")
        found[target] = rule
    return MappingProxyType(found)


_BY_MODULE: Mapping[type[nn.Module], OpRule] = _index([(m, r) for r in RULES for m in r.modules])
_BY_FUNCTION: Mapping[Callable[..., Any], OpRule] = _index(
    [(f, r) for r in RULES for f in r.functions]
)
_BY_METHOD: Mapping[str, OpRule] = _index([(m, r) for r in RULES for m in r.methods])


def module_rule(module: nn.Module) -> OpRule:
    """The rule for a module's exact type, or a TangentError naming what is supported."""
    rule = _BY_MODULE.get(type(module))
    if rule is None:
        supported = ", ".join(sorted(k.__name__ for k in _BY_MODULE))
        raise TangentError(
            f"no tangent rule for module type {type(module).__name__}; supported: {supported}"
        )
    return rule


def delta_rule(module: nn.Module) -> OpRule | None:
    """The rule of a module whose own parameters may be tangent (``None``: none may)."""
    rule = _BY_MODULE.get(type(module))
    return rule if rule is not None and rule.reads_delta else None


def function_rule(fn: Callable[..., Any], node_name: str) -> OpRule:
    rule = _BY_FUNCTION.get(fn)
    if rule is None:
        raise TangentError(
            f"no tangent rule for function {getattr(fn, '__name__', fn)} ({node_name})"
        )
    return rule


def method_rule(method: str, node_name: str) -> OpRule:
    rule = _BY_METHOD.get(method)
    if rule is None:
        raise TangentError(f"no tangent rule for method .{method}() ({node_name})")
    return rule
