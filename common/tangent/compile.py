"""Compiling a base network into dual-path steps.

The network is traced with ``torch.fx``; each graph node becomes a step that maps the
(primal, tangent) values of its inputs to its own (``common.tangent.rules``). A conv whose
only user is an eval-mode BatchNorm is folded with it (``common.tangent.fusion``). Each step
has two forms: ``pair`` (two tensors, for autograd) and ``stacked`` (no grad: [x; t] along
the batch, ``common.tangent.stacked``; it falls back to the pair rule where it has none).
Anything without a rule is refused when the model is built, not in the middle of training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import fx, nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import Dual, DualValue, Tangent
from tmc.common.tangent.fusion import FusedConvBatchNorm
from tmc.common.tangent.rules import (
    ADDITIVE_FUNCTIONS,
    BATCHWISE_FUNCTIONS,
    BATCHWISE_METHODS,
    FLATTENS,
    LINEAR_FUNCTIONS,
    LINEAR_METHODS,
    PARAMETER_RULES,
    RELU_FUNCTIONS,
    add_tangents,
    module_rule,
    relu_tangent,
)
from tmc.common.tangent.stacked import (
    STACKED_MODULE_RULES,
    add_stacked,
    batchwise_stacked,
    relu_stacked,
)

Env = dict[str, DualValue]
DeltaLookup = Mapping[str, torch.Tensor]
StepFn = Callable[[Env, DeltaLookup], DualValue]


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


def _primal(
    arg: fx.node.Argument, env: Env, replace: tuple[str, torch.Tensor] | None = None
) -> fx.node.Argument:
    """``arg`` with each graph node replaced by its primal value (or by ``replace``'s tensor
    for the node it names: how a linear op is applied to a tangent)."""

    def value(node: fx.Node) -> torch.Tensor:
        if replace is not None and node.name == replace[0]:
            return replace[1]
        return env[node.name].primal

    return fx.node.map_arg(arg, value)


def _input_nodes(arg: fx.node.Argument) -> list[fx.Node]:
    found: list[fx.Node] = []

    def note(node: fx.Node) -> fx.Node:
        found.append(node)
        return node

    fx.node.map_arg(arg, note)
    return found


def _single_input(node: fx.Node) -> str:
    (arg,) = node.args
    if not isinstance(arg, fx.Node) or node.kwargs:
        raise TangentError(f"{node.name} must be called on a single activation")
    return arg.name


def _relu_input(node: fx.Node, inplace: bool) -> str:
    """The input of a ReLU node. An in-place ReLU also changes its input for every other
    reader, which the graph does not show: refused unless it is the only reader."""
    (arg,) = node.args
    extra = set(node.kwargs) - {"inplace"}
    if not isinstance(arg, fx.Node) or extra:
        raise TangentError(f"{node.name} must be called on a single activation")
    if (inplace or node.kwargs.get("inplace")) and len(arg.users) > 1:
        raise TangentError(f"{node.name}: an in-place ReLU on an activation read elsewhere")
    return arg.name


def _sole_consumer(node: fx.node.Argument, user: fx.Node) -> bool:
    """``user`` is the only reader of ``node`` (and reads it once): it may overwrite it."""
    if not isinstance(node, fx.Node) or node.op == "placeholder" or set(node.users) != {user}:
        return False
    reads = _input_nodes(user.args) + _input_nodes(user.kwargs)
    return reads.count(node) == 1


def _pair_step(source: str, rule: Callable[[torch.Tensor, Tangent, DeltaLookup], Dual]) -> StepFn:
    def run(env: Env, delta: DeltaLookup) -> DualValue:
        value = env[source]
        return DualValue(*rule(value.primal, value.tangent, delta))

    return run


def _with_fallback(pair: StepFn, stacked: Callable[[Env, DeltaLookup], DualValue | None]) -> StepFn:
    def run(env: Env, delta: DeltaLookup) -> DualValue:
        out = stacked(env, delta)
        return pair(env, delta) if out is None else out

    return run


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

    def module_step(self, node: fx.Node) -> tuple[StepFn, StepFn]:
        path = str(node.target)
        module = self.network.get_submodule(path)
        rule = module_rule(module)
        keys = self.own_delta(path, module)
        if isinstance(module, nn.ReLU):
            source = _relu_input(node, module.inplace)
        else:
            source = _single_input(node)
        single = _sole_consumer(node.args[0], node)

        def own(delta: DeltaLookup) -> dict[str, torch.Tensor]:
            return {local: delta[full] for local, full in keys.items()}

        pair = _pair_step(source, lambda x, t, delta: rule(module, x, t, own(delta)))
        stacked_rule = STACKED_MODULE_RULES.get(type(module))
        if stacked_rule is None:
            return pair, pair
        srule = stacked_rule

        def stacked(env: Env, delta: DeltaLookup) -> DualValue | None:
            return srule(module, env[source], single, own(delta))

        return pair, _with_fallback(pair, stacked)

    def fused_step(self, conv_node: fx.Node, bn_node: fx.Node) -> tuple[StepFn, StepFn]:
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

        return pair, _with_fallback(pair, stacked)

    def carries_tangent(self, graph: fx.Graph) -> set[str]:
        """Names of the nodes whose value may depend on Δ: those that read a tangent
        parameter (their module's, or by ``get_attr``) or a value that does."""
        live: set[str] = set()
        for node in graph.nodes:
            if node.op in ("placeholder", "output"):
                continue
            reads = _input_nodes(node.args) + _input_nodes(node.kwargs)
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
    ) -> tuple[StepFn, StepFn]:
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
                for arg in _input_nodes(read.args) + _input_nodes(read.kwargs):
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
        for arg in _input_nodes(read.args) + _input_nodes(read.kwargs):
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
        value = call(_primal(args, env), _primal(kwargs, env))  # type: ignore[arg-type]
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


def _function_step(node: fx.Node) -> tuple[StepFn, StepFn]:
    fn = node.target
    args, kwargs = node.args, node.kwargs
    if fn in ADDITIVE_FUNCTIONS:
        if kwargs:
            raise TangentError(f"{node.name}: {fn} with keyword arguments is not supported")
        sources = [a.name for a in _input_nodes(args)]

        def run_add(env: Env, _: DeltaLookup) -> DualValue:
            primal = fn(*_primal(args, env))  # type: ignore[misc]
            return DualValue(primal, add_tangents(*(env[s].tangent for s in sources)))

        first, second = args if len(args) == 2 else (None, None)
        if not isinstance(first, fx.Node) or not isinstance(second, fx.Node):
            return run_add, run_add
        a, b = first.name, second.name
        single_a, single_b = _sole_consumer(first, node), _sole_consumer(second, node)

        def stacked_add(env: Env, _: DeltaLookup) -> DualValue | None:
            return add_stacked(env[a], env[b], single_a, single_b)

        return run_add, _with_fallback(run_add, stacked_add)
    if fn in LINEAR_FUNCTIONS:
        return _linear_op(node, lambda a, k: fn(*a, **k), _keeps_dim0(node))
    if fn in RELU_FUNCTIONS:
        source = _relu_input(node, inplace=fn is torch.relu_)
        single = _sole_consumer(node.args[0], node)

        def run_relu(env: Env, _: DeltaLookup) -> DualValue:
            x, t = env[source].pair()
            return DualValue(torch.relu(x), relu_tangent(t, x) if t is not None else None)

        def stacked_relu(env: Env, _: DeltaLookup) -> DualValue | None:
            return relu_stacked(env[source], single)

        return run_relu, _with_fallback(run_relu, stacked_relu)
    raise TangentError(f"no tangent rule for function {getattr(fn, '__name__', fn)} ({node.name})")


def _keeps_dim0(node: fx.Node) -> bool:
    """The op treats each slice along dim 0 on its own (pooling; flatten from dim ≥ 1)."""
    if node.target in FLATTENS:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return isinstance(start, int) and start >= 1
    return node.target in BATCHWISE_FUNCTIONS or node.target in BATCHWISE_METHODS


def _method_step(node: fx.Node) -> tuple[StepFn, StepFn]:
    method = str(node.target)
    if method not in LINEAR_METHODS:
        raise TangentError(f"no tangent rule for method .{method}() ({node.name})")
    return _linear_op(node, lambda a, k: getattr(a[0], method)(*a[1:], **k), _keeps_dim0(node))


def _linear_op(
    node: fx.Node,
    apply: Callable[[tuple[object, ...], dict[str, object]], torch.Tensor],
    keeps_dim0: bool,
) -> tuple[StepFn, StepFn]:
    """An op that is linear in its single activation argument: apply it to both paths."""
    inputs = _input_nodes(node.args) + _input_nodes(node.kwargs)
    if len(inputs) != 1:
        raise TangentError(f"{node.name}: a linear op must take exactly one activation")
    source = inputs[0].name
    args, kwargs = node.args, node.kwargs

    def run(env: Env, _: DeltaLookup) -> DualValue:
        primal = apply(_primal(args, env), _primal(kwargs, env))  # type: ignore[arg-type]
        t = env[source].tangent
        if t is None:
            return DualValue(primal, None)
        swap = (source, t)
        return DualValue(primal, apply(_primal(args, env, swap), _primal(kwargs, env, swap)))  # type: ignore[arg-type]

    if not keeps_dim0:
        return run, run

    def stacked(env: Env, _: DeltaLookup) -> DualValue | None:
        value = env[source]

        def on(z: torch.Tensor) -> torch.Tensor:
            swap = (source, z)
            return apply(_primal(args, env, swap), _primal(kwargs, env, swap))  # type: ignore[arg-type]

        return batchwise_stacked(value, on)

    return run, _with_fallback(run, stacked)
