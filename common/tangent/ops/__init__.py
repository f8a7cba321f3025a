"""The tangent rules, one per operation (``registry.RULES``), and their lookups."""

from tmc.common.tangent.ops.registry import (
    RULES,
    delta_rule,
    function_rule,
    method_rule,
    module_rule,
)
from tmc.common.tangent.ops.rule import OpRule

__all__ = ["RULES", "OpRule", "delta_rule", "function_rule", "method_rule", "module_rule"]
