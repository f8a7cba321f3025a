"""Compiling a base network into dual-path steps.

The network is traced with ``torch.fx``; each graph node becomes a step that maps the
(primal, tangent) values of its inputs to its own, by the rule registered for its module
type, function or method (``tmc.common.tangent.ops``). A conv whose only user is an
eval-mode BatchNorm is folded with it (``tmc.common.tangent.fusion``). Each step has two
forms: ``pair`` (two tensors, for autograd) and ``stacked`` (no grad: [x; t] along the
batch; it falls back to the pair form where the rule has no stacked one or declines).
Anything without a rule is refused when the model is built, not in the middle of training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import fx, nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import DualValue
from tmc.common.tangent.fusion import FusedConvBatchNorm
from tmc.common.tangent.graph import (
    DeltaLookup,
    Env,
    StepFn,
    StepForms,
    input_nodes,
    primal_args,
    single_input,
    sole_consumer,
    with_fallback,
)
from tmc.common.tangent.ops import OpRule, delta_rule, function_rule, method_rule, module_rule


@dataclass(frozen=True)
class Step:
    """One graph node: its name (the key of its output in the environment), its two forms,
    and the names of the values no later step reads (dropped once it has run)."""

    name: str
    pair: StepFn
    stacked: StepFn
    frees: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompiledGraph:
    input: str
    steps: tuple[Step, ...]
    output: str
    fused: dict[str, FusedConvBatchNorm]
    """Folded conv-BN pairs by BN module path (their buffers must follow the model)."""
    live: frozenset[str] = frozenset()
    """Steps whose value may carry a tangent; the others run before them, once per input."""
    frontier: tuple[str, ...] = ()
    """Values of steps outside ``live`` (or the input) that ``live`` steps or the output
    read: what the frozen part hands over (the features a training loop may cache)."""


def _unary_steps(
    node: fx.Node, rule: OpRule, module: nn.Module | None, own: Callable[[DeltaLookup], DeltaLookup]
) -> StepForms:
    """Both forms of a rule applied to a node's one activation (a module, or a function
    such as ``F.relu``); ``own`` picks the module's Δ out of the full lookup."""
    source = rule.source(node, module)
    single = sole_consumer(node.args[0], node)
    pair_rule = rule.pair
    if pair_rule is None:  # pragma: no cover - OpRule refuses such a rule when defined
        raise TangentError(f"rule {rule.name} has no pair form")

    def pair(env: Env, delta: DeltaLookup) -> DualValue:
        value = env[source]
        return DualValue(*pair_rule(module, value.primal, value.tangent, own(delta)))

    stacked_rule = rule.stacked
    if stacked_rule is None:
        return pair, pair
    srule = stacked_rule

    def stacked(env: Env, delta: DeltaLookup) -> DualValue | None:
        return srule(module, env[source], single, own(delta))

    return pair, with_fallback(pair, stacked)


def _no_delta(_: DeltaLookup) -> DeltaLookup:
    return {}


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
                if delta_rule(module) is None:
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

    def module_step(self, node: fx.Node) -> StepForms:
        path = str(node.target)
        module = self.network.get_submodule(path)
        rule = module_rule(module)
        keys = self.own_delta(path, module)

        def own(delta: DeltaLookup) -> DeltaLookup:
            return {local: delta[full] for local, full in keys.items()}

        return _unary_steps(node, rule, module, own)

    def fused_step(self, conv_node: fx.Node, bn_node: fx.Node) -> StepForms:
        conv_path, bn_path = str(conv_node.target), str(bn_node.target)
        conv = self.network.get_submodule(conv_path)
        bn = self.network.get_submodule(bn_path)
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TangentError(f"{conv_path} → {bn_path} is not a conv-BN pair")
        fused = FusedConvBatchNorm(conv, bn)
        self.fused[bn_path] = fused
        conv_keys = self.own_delta(conv_path, conv)
        bn_keys = self.own_delta(bn_path, bn)
        source = single_input(conv_node)

        def deltas(delta: DeltaLookup) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
            return (
                {local: delta[full] for local, full in conv_keys.items()},
                {local: delta[full] for local, full in bn_keys.items()},
            )

        def pair(env: Env, delta: DeltaLookup) -> DualValue:
            value = env[source]
            return DualValue(*fused.dual(value.primal, value.tangent, *deltas(delta)))

        def stacked(env: Env, delta: DeltaLookup) -> DualValue | None:
            return fused.stacked(env[source], *deltas(delta))

        return pair, with_fallback(pair, stacked)

    def carries_tangent(self, graph: fx.Graph) -> set[str]:
        """Names of the nodes whose value may depend on Δ: those that read a tangent
        parameter (their module's, or by ``get_attr``) or a value that does."""
        live: set[str] = set()
        for node in graph.nodes:
            if node.op in ("placeholder", "output"):
                continue
            reads = input_nodes(node.args) + input_nodes(node.kwargs)
            if any(r.name in live for r in reads) or self.reads_tangent(node):
                live.add(node.name)
        return live

    def reads_tangent(self, node: fx.Node) -> bool:
        if node.op == "get_attr":
            target = str(node.target)
            return any(n == target or n.startswith(target + ".") for n in self.tangent_names)
        if node.op != "call_module":
            return False
        prefix = str(node.target) + "."
        return any(n.startswith(prefix) for n in self.tangent_names)

    def rule_step(
        self, node: fx.Node, by_name: Mapping[str, fx.Node], folded_bn: Mapping[str, str]
    ) -> StepForms:
        """The node's (pair, stacked) forms from its rule; a TangentError when it has none."""
        if node.op == "call_module" and node.name in folded_bn:
            return self.fused_step(by_name[folded_bn[node.name]], node)
        if node.op == "call_module":
            return self.module_step(node)
        if node.op == "call_function":
            return _function_step(node)
        if node.op == "call_method":
            return _method_step(node)
        raise TangentError(f"graph node {node.op} {node.target} has no tangent rule")

    def compile(self, graph: fx.Graph) -> CompiledGraph:
        forms: list[tuple[fx.Node, StepFn, StepFn]] = []
        inputs: list[str] = []
        output: fx.Node | None = None
        live = self.carries_tangent(graph)
        pairs = self.fusable_convs(graph)
        folded_bn = {bn.name: conv for conv, bn in pairs.items()}
        by_name = {n.name: n for n in graph.nodes}
        for node in graph.nodes:
            if node.op == "placeholder":
                inputs.append(node.name)
            elif node.op == "output":
                if not isinstance(node.args[0], fx.Node):
                    raise TangentError("the network must return a single tensor")
                output = node.args[0]
            elif node.op == "call_module" and node.name in pairs:
                continue  # computed by the step of the BN it is folded into
            else:
                try:
                    forms.append((node, *self.rule_step(node, by_name, folded_bn)))
                except TangentError:
                    if node.name in live or node.op not in _PLAIN_OPS:
                        raise
                    # Below (or beside) every tangent layer an op without a rule (resizing,
                    # padding, any activation) runs plainly, as the network itself runs it.
                    step = _plain_step(node, self.network)
                    forms.append((node, step, step))
        unclaimed = self.tangent_names - self.claimed
        if unclaimed:
            raise TangentError(
                f"tangent parameters {sorted(unclaimed)[:5]} are not used by any traced "
                "module, so the tangent forward cannot differentiate in them"
            )
        if len(inputs) != 1 or output is None:
            raise TangentError("the network must take one input tensor and return one tensor")
        steps = _with_lifetimes(forms, folded_bn, by_name, output.name)
        frontier: dict[str, None] = {}
        for node, _, _ in forms:
            if node.name in live:
                read = by_name[folded_bn[node.name]] if node.name in folded_bn else node
                for arg in input_nodes(read.args) + input_nodes(read.kwargs):
                    if arg.name not in live:
                        frontier[arg.name] = None
        if output.name not in live:
            frontier[output.name] = None
        return CompiledGraph(
            inputs[0], steps, output.name, self.fused, frozenset(live), tuple(frontier)
        )


def _with_lifetimes(
    forms: list[tuple[fx.Node, StepFn, StepFn]],
    folded_bn: Mapping[str, str],
    by_name: Mapping[str, fx.Node],
    output: str,
) -> tuple[Step, ...]:
    """Steps that drop each value after its last reader (memory is reused while warm)."""
    last: dict[str, int] = {}
    for i, (node, _, _) in enumerate(forms):
        read = by_name[folded_bn[node.name]] if node.name in folded_bn else node
        for arg in input_nodes(read.args) + input_nodes(read.kwargs):
            last[arg.name] = i
    frees: dict[int, list[str]] = {}
    for name, i in last.items():
        if name != output:
            frees.setdefault(i, []).append(name)
    return tuple(
        Step(node.name, pair, stacked, tuple(frees.get(i, ())))
        for i, (node, pair, stacked) in enumerate(forms)
    )


_PLAIN_OPS = frozenset({"call_module", "call_function", "call_method", "get_attr"})


def _plain_step(node: fx.Node, network: nn.Module) -> StepFn:
    """A node that carries no tangent, evaluated on primal values (θ0 read at run time, so
    that it follows the network across devices and dtypes)."""
    target = node.target
    args, kwargs = node.args, node.kwargs

    def call(values: tuple[object, ...], options: dict[str, object]) -> object:
        if node.op == "call_module":
            return network.get_submodule(str(target))(*values, **options)
        if node.op == "call_method":
            first, *rest = values
            return getattr(first, str(target))(*rest, **options)
        if node.op == "get_attr":
            return _fetch_attr(network, str(target))
        return target(*values, **options)  # type: ignore[operator]

    def run(env: Env, _: DeltaLookup) -> DualValue:
        value = call(primal_args(args, env), primal_args(kwargs, env))  # type: ignore[arg-type]
        return DualValue(value, None)  # type: ignore[arg-type]

    return run


def _fetch_attr(network: nn.Module, path: str) -> object:
    owner, _, name = path.rpartition(".")
    return getattr(network.get_submodule(owner) if owner else network, name)


def compile_network(network: nn.Module, tangent_names: frozenset[str]) -> CompiledGraph:
    """Trace ``network`` (eval mode) and compile it into dual-path steps."""
    try:
        graph = fx.symbolic_trace(network).graph
    except Exception as exc:
        raise TangentError(f"cannot trace {type(network).__name__} with torch.fx: {exc}") from exc
    return _Compiler(network, tangent_names).compile(graph)


def _function_step(node: fx.Node) -> StepForms:
    rule = function_rule(node.target, node.name)  # type: ignore[arg-type]
    if rule.node_steps is not None:
        return rule.node_steps(node)
    return _unary_steps(node, rule, None, _no_delta)


def _method_step(node: fx.Node) -> StepForms:
    rule = method_rule(str(node.target), node.name)
    if rule.node_steps is None:  # pragma: no cover - OpRule refuses such a rule when defined
        raise TangentError(f"rule {rule.name} has no form for method .{node.target}()")
    return rule.node_steps(node)
