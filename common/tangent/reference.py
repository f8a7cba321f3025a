"""The tangent forward by ``torch.func.jvp``: the ground truth the dual-path model is tested
against, and the alternative implementation the cost benchmark compares with."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call, jvp


def jvp_forward_dual(
    network: nn.Module, delta: Mapping[str, torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x; θ0), J_θ f(x; θ0)·Δ) with forward-mode AD over the parameters named in ``delta``.

    ``network`` must be in eval mode (frozen normalisation statistics).
    """
    names = sorted(delta)
    state = {**dict(network.named_parameters()), **dict(network.named_buffers())}
    primals = tuple(state[n].detach() for n in names)
    tangents = tuple(delta[n] for n in names)

    def f(*tangent_params: torch.Tensor) -> torch.Tensor:
        return functional_call(
            network, {**state, **dict(zip(names, tangent_params, strict=True))}, (x,)
        )

    out, jv = jvp(f, primals, tangents)[:2]
    return out, jv


def jvp_forward(
    network: nn.Module, delta: Mapping[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """f(x; θ0) + J·Δ by ``torch.func.jvp``."""
    out, jv = jvp_forward_dual(network, delta, x)
    return out + jv
