"""The tangent rule of one operation: its pair form, its stacked form, what it applies to.

A rule is registered once (``tmc.common.tangent.ops.registry``) and covers every way the
operation shows up in a traced graph: as module types, as functions, as tensor methods.

* ``pair(module, x, t, Δ) -> (y, ẏ)``: the primal input ``x`` and its tangent ``t`` (the
  directional derivative along Δ there; ``None`` means exactly zero) to the output and its
  tangent, as two tensors (the path autograd differentiates). ``Δ`` holds the module's own
  tangent parameters by local name (empty unless ``reads_delta``). For a function the
  module is ``None``.
* ``stacked(module, value, single_user, Δ)``: the no-grad form on ``value`` held stacked,
  ``[x; t]`` along the batch (``tmc.common.tangent.dual``), or ``None`` where it declines and
  the pair form runs on the two halves. ``single_user``: this step is the input's only
  reader, so it may overwrite the input when the input is ``fresh``.
* ``node_steps(node)``: for functions and methods whose activation is one argument among
  others (reshape, pooling with arguments, addition), both forms built from the graph node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from tmc.common.errors import TangentError
from tmc.common.tangent.dual import Dual, DualValue, Tangent
from tmc.common.tangent.graph import StepForms, single_input

PairRule = Callable[[Any, torch.Tensor, Tangent, Mapping[str, torch.Tensor]], Dual]
StackedRule = Callable[[Any, DualValue, bool, Mapping[str, torch.Tensor]], "DualValue | None"]
NodeSteps = Callable[[fx.Node], StepForms]
SourceRule = Callable[[fx.Node, "nn.Module | None"], str]


def _single_source(node: fx.Node, _: nn.Module | None) -> str:
    return single_input(node)


@dataclass(frozen=True)
class OpRule:
    """One operation's tangent rule and the graph targets it applies to.

    Module types and functions without ``node_steps`` run ``pair``/``stacked`` on their one
    activation, read by ``source`` (by default: the node's single positional argument)."""

    name: str
    pair: PairRule | None = None
    stacked: StackedRule | None = None
    modules: tuple[type[nn.Module], ...] = ()
    functions: tuple[Callable[..., Any], ...] = ()
    methods: tuple[str, ...] = ()
    node_steps: NodeSteps | None = None
    reads_delta: bool = False
    """The module's own parameters may be tangent (``pair`` and ``stacked`` read their Δ)."""
    source: SourceRule = _single_source

    def __post_init__(self) -> None:
        if not (self.modules or self.functions or self.methods):
            raise TangentError(f"rule {self.name} applies to nothing")
        if (self.modules or (self.functions and self.node_steps is None)) and self.pair is None:
            raise TangentError(f"rule {self.name} needs a pair form for its modules")
        if self.methods and self.node_steps is None:
            raise TangentError(f"rule {self.name} needs node_steps for its methods")


def add_tangents(*tangents: Tangent) -> Tangent:
    """Sum of tangents where ``None`` is zero (and the sum of only zeros stays ``None``)."""
    present = [t for t in tangents if t is not None]
    if not present:
        return None
    total = present[0]
    for t in present[1:]:
        total = total + t
    return total


def owned(value: DualValue, single_user: bool) -> bool:
    """May the consumer overwrite ``value``'s tensors (after ``stack()`` when it has a tangent)?"""
    return single_user and value.fresh


def affine_stacked(
    value: DualValue,
    apply: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    bias: torch.Tensor | None,
    own: Callable[[torch.Tensor], Tangent],
) -> DualValue:
    """The stacked form of y = apply(x, b), ẏ = apply(t, None) + own(x): the linear map
    runs once on [x; t], then the bias goes to the primal half and own(x) (the layer's Δ
    term) to the tangent half. ``bias`` and ``own``'s result may broadcast to the output."""
    x = value.primal
    if value.tangent is None:
        y = apply(x, None) if bias is None else apply(x, bias.flatten())
        t = own(x)
        if t is None:
            return DualValue(y, None, fresh=True)
        return DualValue.of_stack(torch.cat([y, t.expand_as(y)]), y.shape[0], fresh=True)
    rows = value.rows
    out = apply(value.stack(), None)
    if bias is not None:
        out[:rows].add_(bias)
    t = own(x)
    if t is not None:
        out[rows:].add_(t)
    return DualValue.of_stack(out, rows, fresh=True)
