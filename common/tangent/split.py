"""Cutting a network where training starts: a frozen prefix and a trainable suffix.

The part of a network below its first trained parameter computes the same values in every
epoch; LQF (Achille et al. 2021) and TMC's last-stage scope run it once per example and
train on its outputs. Here the network is traced with ``torch.fx`` and each graph node is
classified: a node is *frozen* when it depends on the input but on no trained parameter.
The frozen nodes read by the rest of the graph are the *features*. The prefix maps the
input to them; the suffix maps them to the output and holds the trained parameters under
their original names (``fx.GraphModule`` keeps qualified module paths), so that it can
stand in for the network in a :class:`~common.tangent.TangentModel` or in fine-tuning.

Nodes that depend on neither (constants, frozen parameters read by ``get_attr``) stay in
the suffix: they are the same for every example and cannot be cached per example.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import torch
from torch import fx, nn

Features = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class FrozenSplit:
    """``suffix(*prefix(x)) == network(x)``; ``prefix`` returns a tuple of tensors."""

    prefix: fx.GraphModule
    suffix: fx.GraphModule
    feature_names: tuple[str, ...]


def _reads(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)  # type: ignore[func-returns-value]
    return found


def _uses_trained(node: fx.Node, trained: Collection[str]) -> bool:
    if node.op not in ("call_module", "get_attr"):
        return False
    target = str(node.target)
    return any(n == target or n.startswith(target + ".") for n in trained)


def classify(graph: fx.Graph, trained: Collection[str]) -> tuple[set[str], set[str]]:
    """(trainable, frozen) node names: trainable nodes depend on a trained parameter;
    frozen ones depend on the input and on no trained parameter."""
    trainable: set[str] = set()
    from_input: set[str] = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            from_input.add(node.name)
            continue
        if node.op == "output":
            continue
        reads = {r.name for r in _reads(node)}
        if reads & trainable or _uses_trained(node, trained):
            trainable.add(node.name)
        elif reads & from_input:
            from_input.add(node.name)
    frozen = {n for n in from_input if n not in trainable}
    return trainable, frozen


def split_frozen(network: nn.Module, trained: Collection[str]) -> FrozenSplit | None:
    """The network cut below its trained parameters; ``None`` when it cannot be traced, has
    not exactly one input, or nothing below the first trained layer is worth caching (the
    features would be the input itself)."""
    try:
        graph = fx.symbolic_trace(network).graph
    except Exception:  # any tracing failure means: no split, train on the input
        return None
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return None
    trainable, frozen = classify(graph, trained)
    features: list[fx.Node] = []
    for node in graph.nodes:
        if node.name in frozen and any(
            user.name not in frozen or user.op == "output" for user in node.users
        ):
            features.append(node)
    if not features or features == placeholders or not trainable:
        return None
    prefix = fx.Graph()
    remap: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node.op == "placeholder" or node.name in frozen:
            remap[node] = prefix.node_copy(node, lambda n: remap[n])
    prefix.output(tuple(remap[f] for f in features))
    suffix = fx.Graph()
    given = suffix.placeholder("features")
    inner: dict[fx.Node, fx.Node] = {}
    for index, feature in enumerate(features):
        inner[feature] = suffix.call_function(operator.getitem, (given, index))
    for node in graph.nodes:
        if node.op == "placeholder" or node.name in frozen:
            continue
        inner[node] = suffix.node_copy(node, lambda n: inner[n])
    return FrozenSplit(
        prefix=fx.GraphModule(network, prefix),
        suffix=fx.GraphModule(network, suffix),
        feature_names=tuple(f.name for f in features),
    )


def is_per_example(features: Features, rows: int) -> bool:
    """Every feature is a tensor with one row per example (what can be cached)."""
    return all(
        isinstance(f, torch.Tensor) and f.dim() >= 1 and f.shape[0] == rows for f in features
    )


def shares_parameters(split: FrozenSplit, network: nn.Module) -> bool:
    """The suffix's parameters are the network's own tensors, under the same names."""
    own: Mapping[str, nn.Parameter] = dict(network.named_parameters())
    return all(own.get(n) is p for n, p in split.suffix.named_parameters())
