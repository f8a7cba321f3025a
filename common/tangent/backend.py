"""The interface of a tangent engine: what training, feature caching and DP-SGD call.

A :class:`~tmc.common.tangent.model.TangentModel` holds Δ and one backend, chosen once when
the model is built: the dual-path engine (``tmc.common.tangent.dual_engine``) when every
operation of the network has a rule, the generic ``torch.func.jvp`` engine
(``tmc.common.tangent.jvp_engine``) otherwise. Callers use the model (or what its backend
hands out) and never ask which backend runs.

A backend is an ``nn.Module`` so that what it precomputes from θ0 (folded conv-BN
weights) follows the model across ``.to(device)``; it does not own the base network (held
outside the module tree, so that its parameters are registered once, by the model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tmc.common.tangent.dual import Dual
from tmc.common.tangent.graph import DeltaLookup
from tmc.common.tangent.split import Features

PathName = Literal["dual", "jvp"]
Inputs = torch.Tensor | Features
"""A batch of images, or the cached features of one (a tuple of tensors)."""
Lookup = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Linearised:
    """The tangent model as DP-SGD sees it, for per-example gradients.

    ``logits(inputs, delta())``: the batched f_lin(inputs; Δ) at the model's current Δ.
    ``inner(inputs, params)``: a
    function whose gradient w.r.t. ``params`` at ``point()``, contracted with g = ∂loss/∂f,
    is J(x)ᵀ·g, the gradient of an example's loss w.r.t. Δ (f_lin is linear in Δ). Which
    function and which point is the backend's business: Δ itself through the tangent
    forward, or θ0 through the plain network."""

    names: tuple[str, ...]
    logits: Callable[[Inputs, Lookup], torch.Tensor]
    inner: Callable[[Inputs, Lookup], torch.Tensor]
    point: Callable[[], dict[str, torch.Tensor]]
    delta: Callable[[], dict[str, torch.Tensor]]


def output(dual: Dual) -> torch.Tensor:
    """f(x; θ0) + J·Δ from the pair (the tangent is ``None`` when no Δ reaches the output)."""
    primal, tangent = dual
    return primal if tangent is None else primal + tangent


class TangentBackend(nn.Module, ABC):
    """One way to compute f_lin(x; θ0 + Δ) = f(x; θ0) + J_θ f(x; θ0)·Δ exactly."""

    name: PathName
    """Which engine this is (reported, never branched on by callers)."""

    @abstractmethod
    def forward_dual(self, x: torch.Tensor, delta: DeltaLookup) -> Dual:
        """(f(x; θ0), J·Δ) for Δ = ``delta`` (base parameter name → tensor); the tangent
        is ``None`` when no Δ reaches the output. Differentiable in ``delta`` and ``x``."""

    @abstractmethod
    def frozen_features(self, x: torch.Tensor) -> Features | None:
        """What the part of the network below the first tangent layer hands over for ``x``,
        or ``None`` when this backend cannot cut the network there."""

    @abstractmethod
    def forward_dual_features(self, features: Features, delta: DeltaLookup) -> Dual:
        """``forward_dual`` from the output of ``frozen_features`` (the part above the cut)."""

    @abstractmethod
    def linearised(
        self, delta: Callable[[], dict[str, torch.Tensor]], *, features: bool
    ) -> Linearised:
        """The per-example gradient machinery DP-SGD needs, on images or (``features``) on
        the output of ``frozen_features``; ``delta()`` gives the model's current Δ."""
