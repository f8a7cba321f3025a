"""Compiling a base network into dual-path steps.

The network is traced with ``torch.fx``; each graph node becomes a step that maps the
(primal, tangent) pairs of its inputs to its own pair (``common.tangent.rules``). A conv
whose only user is an eval-mode BatchNorm is folded with it (``common.tangent.fusion``).
Anything without a rule is refused when the model is built, not in the middle of training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import fx, nn

from common.errors import TangentError
from common.tangent.fusion import FusedConvBatchNorm
from common.tangent.rules import (
    ADDITIVE_FUNCTIONS,
    LINEAR_FUNCTIONS,
    LINEAR_METHODS,
    PARAMETER_RULES,
    RELU_FUNCTIONS,
    Dual,
    add_tangents,
    module_rule,
)

Env = dict[str, Dual]
DeltaLookup = Mapping[str, torch.Tensor]
StepFn = Callable[[Env, DeltaLookup], Dual]


@dataclass(frozen=True)
class Step:
    """One graph node: its name (the key of its output in the environment) and its rule."""

    name: str
    run: StepFn


@dataclass(frozen=True)
class CompiledGraph:
    input: str
    steps: tuple[Step, ...]
    output: str
    fused: dict[str, FusedConvBatchNorm]
    """Folded conv-BN pairs by BN module path (their buffers must follow the model)."""


def _primal(arg: object, env: Env, replace: tuple[str, torch.Tensor] | None = None) -> object:
    """``arg`` with each graph node replaced by its primal value (or by ``replace``'s tensor
    for the node it names: how a linear op is applied to a tangent)."""

    def value(node: fx.Node) -> torch.Tensor:
        if replace is not None and node.name == replace[0]:
            return replace[1]
        return env[node.name][0]

    return fx.node.map_arg(arg, value)  # type: ignore[arg-type]


def _input_nodes(arg: object) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(arg, found.append)  # type: ignore[arg-type]
    return found


def _single_input(node: fx.Node) -> str:
    (arg,) = node.args
    if not isinstance(arg, fx.Node) or node.kwargs:
        raise TangentError(f"{node.name} must be called on a single activation")
    return arg.name


class _Compiler:
    def __init__(self, network: nn.Module, tangent_names: frozenset[str]) -> None:
        self.network = network
        self.tangent_names = tangent_names
        self.claimed: set[str] = set()
        self.fused: dict[str, FusedConvBatchNorm] = {}

    def own_delta(self, path: str, module: nn.Module) -> dict[str, str]:
        """local parameter name → full name, for the module's parameters that are tangent."""
        keys: dict[str, str] = {}
        for local, _ in module.named_parameters(recurse=False):
            full = f"{path}.{local}" if path else local
            if full in self.tangent_names:
                if type(module) not in PARAMETER_RULES:
                    raise TangentError(f"{full}: {type(module).__name__} has no Δ rule")
                keys[local] = full
                self.claimed.add(full)
        return keys

    def fusable_convs(self, graph: fx.Graph) -> dict[str, fx.Node]:
        """conv node name → the BN node that is its only user."""
        pairs: dict[str, fx.Node] = {}
        for node in graph.nodes:
            if node.op != "call_module" or len(node.users) != 1:
                continue
            (user,) = node.users
            if (
                isinstance(self.network.get_submodule(str(node.target)), nn.Conv2d)
                and user.op == "call_module"
                and type(self.network.get_submodule(str(user.target))) is nn.BatchNorm2d
                and user.args == (node,)
            ):
                pairs[node.name] = user
        return pairs

    def module_step(self, node: fx.Node) -> StepFn:
        path = str(node.target)
        module = self.network.get_submodule(path)
        rule = module_rule(module)
        keys = self.own_delta(path, module)
        source = _single_input(node)

        def run(env: Env, delta: DeltaLookup) -> Dual:
            x, t = env[source]
            return rule(module, x, t, {local: delta[full] for local, full in keys.items()})

        return run

    def fused_step(self, conv_node: fx.Node, bn_node: fx.Node) -> StepFn:
        conv_path, bn_path = str(conv_node.target), str(bn_node.target)
        conv = self.network.get_submodule(conv_path)
        bn = self.network.get_submodule(bn_path)
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TangentError(f"{conv_path} → {bn_path} is not a conv-BN pair")
        fused = FusedConvBatchNorm(conv, bn)
        self.fused[bn_path] = fused
        conv_keys = self.own_delta(conv_path, conv)
        bn_keys = self.own_delta(bn_path, bn)
        source = _single_input(conv_node)

        def run(env: Env, delta: DeltaLookup) -> Dual:
            x, t = env[source]
            return fused.dual(
                x,
                t,
                {local: delta[full] for local, full in conv_keys.items()},
                {local: delta[full] for local, full in bn_keys.items()},
            )

        return run

    def compile(self, graph: fx.Graph) -> CompiledGraph:
        steps: list[Step] = []
        inputs: list[str] = []
        output: str | None = None
        pairs = self.fusable_convs(graph)
        folded_bn = {bn.name: conv for conv, bn in pairs.items()}
        conv_nodes = {n.name: n for n in graph.nodes}
        for node in graph.nodes:
            if node.op == "placeholder":
                inputs.append(node.name)
            elif node.op == "output":
                if not isinstance(node.args[0], fx.Node):
                    raise TangentError("the network must return a single tensor")
                output = node.args[0].name
            elif node.op == "call_module" and node.name in pairs:
                continue  # computed by the step of the BN it is folded into
            elif node.op == "call_module" and node.name in folded_bn:
                steps.append(Step(node.name, self.fused_step(conv_nodes[folded_bn[node.name]], node)))
            elif node.op == "call_module":
                steps.append(Step(node.name, self.module_step(node)))
            elif node.op == "call_function":
                steps.append(Step(node.name, _function_step(node)))
            elif node.op == "call_method":
                steps.append(Step(node.name, _method_step(node)))
            else:
                raise TangentError(f"graph node {node.op} {node.target} has no tangent rule")
        unclaimed = self.tangent_names - self.claimed
        if unclaimed:
            raise TangentError(
                f"tangent parameters {sorted(unclaimed)[:5]} are not used by any traced "
                "module, so the tangent forward cannot differentiate in them"
            )
        if len(inputs) != 1 or output is None:
            raise TangentError("the network must take one input tensor and return one tensor")
        return CompiledGraph(inputs[0], tuple(steps), output, self.fused)


def compile_network(network: nn.Module, tangent_names: frozenset[str]) -> CompiledGraph:
    """Trace ``network`` (eval mode) and compile it into dual-path steps."""
    try:
        graph = fx.symbolic_trace(network).graph
    except Exception as exc:
        raise TangentError(f"cannot trace {type(network).__name__} with torch.fx: {exc}") from exc
    return _Compiler(network, tangent_names).compile(graph)


def _function_step(node: fx.Node) -> StepFn:
    fn = node.target
    args, kwargs = node.args, node.kwargs
    if fn in ADDITIVE_FUNCTIONS:
        if kwargs:
            raise TangentError(f"{node.name}: {fn} with keyword arguments is not supported")
        sources = [a.name for a in _input_nodes(args)]

        def run_add(env: Env, _: DeltaLookup) -> Dual:
            primal = fn(*_primal(args, env))  # type: ignore[misc, operator]
            return primal, add_tangents(*(env[s][1] for s in sources))

        return run_add
    if fn in LINEAR_FUNCTIONS:
        return _linear_op(node, lambda a, k: fn(*a, **k))  # type: ignore[operator]
    if fn in RELU_FUNCTIONS:
        source = _single_input(node)

        def run_relu(env: Env, _: DeltaLookup) -> Dual:
            x, t = env[source]
            return torch.relu(x), (t.masked_fill(x <= 0, 0.0) if t is not None else None)

        return run_relu
    raise TangentError(f"no tangent rule for function {getattr(fn, '__name__', fn)} ({node.name})")


def _method_step(node: fx.Node) -> StepFn:
    method = str(node.target)
    if method not in LINEAR_METHODS:
        raise TangentError(f"no tangent rule for method .{method}() ({node.name})")
    return _linear_op(node, lambda a, k: getattr(a[0], method)(*a[1:], **k))


def _linear_op(
    node: fx.Node, apply: Callable[[tuple[object, ...], dict[str, object]], torch.Tensor]
) -> StepFn:
    """An op that is linear in its single activation argument: apply it to both paths."""
    inputs = _input_nodes(node.args) + _input_nodes(node.kwargs)
    if len(inputs) != 1:
        raise TangentError(f"{node.name}: a linear op must take exactly one activation")
    source = inputs[0].name
    args, kwargs = node.args, node.kwargs

    def run(env: Env, _: DeltaLookup) -> Dual:
        primal = apply(_primal(args, env), _primal(kwargs, env))  # type: ignore[arg-type]
        t = env[source][1]
        if t is None:
            return primal, None
        swap = (source, t)
        return primal, apply(_primal(args, env, swap), _primal(kwargs, env, swap))  # type: ignore[arg-type]

    return run
