"""The generic tangent forward: ``torch.func.jvp`` over ``torch.func.functional_call``.

It works for any ``nn.Module`` whose forward is a function of its parameters and buffers
(depthwise convs, any activation, LayerNorm, attention, ...): forward-mode AD pushes Δ
through every operation PyTorch can differentiate, and reverse-mode AD through that gives
the gradient with respect to Δ, because PyTorch's forward-AD formulas are themselves
differentiable. Operations that do not depend on a tangent parameter carry no dual part,
so the network below the first tangent layer runs once, plainly, as in the dual-path engine
(docs/design/method.md; ``torch.func`` documentation, "jvp").

The network must be in eval mode: batch statistics or dropout would make the output depend
on the batch and break linearity in Δ.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

Inputs = torch.Tensor | tuple[torch.Tensor, ...]
"""The network's one argument: an image batch, or the tuple of cached features that the
suffix of a split network takes (``common.tangent.split``)."""


@contextmanager
def _forward_ad_kernels() -> Iterator[None]:
    """Attention through kernels that forward-mode AD can push tangents through: the
    unfused ``nn.MultiheadAttention`` path and the math backend of scaled-dot-product
    attention (the fused kernels have no forward-AD formula)."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


class JvpForward:
    """(f(x; θ0), J·Δ) of ``network`` in the parameters ``tangent_names``.

    Holds no tensors of its own: θ0 is read from the network at each call, so the forward
    follows the network across ``.to(device)`` and dtype changes.

    When Δ needs a gradient (training), the gradient is taken by linearity instead of
    through the forward-AD graph: ∂/∂Δ of a loss of f(θ0) + JΔ is Jᵀg, one reverse-mode
    pass of the plain network at θ0. That needs only first derivatives of each operation
    (reverse-over-forward would need the derivative of every forward-AD formula, which
    PyTorch lacks for some, e.g. Hardsigmoid). Only an input that needs a gradient takes
    the reverse-over-forward route.
    """

    def __init__(self, network: nn.Module, tangent_names: tuple[str, ...]) -> None:
        self.network = network
        self.tangent_names = tuple(sorted(tangent_names))

    def _state(self) -> dict[str, torch.Tensor]:
        network = self.network
        return {**dict(network.named_parameters()), **dict(network.named_buffers())}

    def _call(self, state: Mapping[str, torch.Tensor], x: Inputs) -> torch.Tensor:
        out: torch.Tensor = functional_call(self.network, dict(state), (x,))
        return out

    def dual(
        self, x: Inputs, tangents: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x; θ0), J·Δ) by ``torch.func.jvp``, differentiable as autograd allows."""
        state = self._state()
        names = self.tangent_names
        primals = tuple(state[n].detach() for n in names)

        def f(*tangent_params: torch.Tensor) -> torch.Tensor:
            return self._call({**state, **dict(zip(names, tangent_params, strict=True))}, x)

        with _forward_ad_kernels():
            out, jv = jvp(f, primals, tangents)[:2]
        return out, jv

    def pullback(self, x: Inputs, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Jᵀ·grad at θ0, one tensor per tangent parameter (in ``tangent_names`` order)."""
        state = self._state()
        leaves = {n: state[n].detach().requires_grad_(True) for n in self.tangent_names}
        plain = x.detach() if isinstance(x, torch.Tensor) else tuple(t.detach() for t in x)
        with torch.enable_grad(), _forward_ad_kernels():
            out = self._call({**state, **leaves}, plain)
            grads = torch.autograd.grad(out, tuple(leaves.values()), grad, allow_unused=True)
        return tuple(
            torch.zeros_like(leaves[n]) if g is None else g
            for n, g in zip(self.tangent_names, grads, strict=True)
        )

    def __call__(
        self, x: Inputs, delta: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tangents = tuple(delta[n] for n in self.tangent_names)
        wants_delta_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tangents)
        wants_input_grad = (
            x.requires_grad if isinstance(x, torch.Tensor) else any(t.requires_grad for t in x)
        )
        if wants_delta_grad and not wants_input_grad:
            primal, tangent = _Linearised.apply(self, x, *tangents)
            return primal, tangent
        return self.dual(x, tangents)


class _Linearised(torch.autograd.Function):
    """f_lin's two outputs with the gradient w.r.t. Δ taken as Jᵀg (see JvpForward)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        linearised: JvpForward,
        x: Inputs,
        *tangents: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            primal, tangent = linearised.dual(x, tangents)
        # Kept on ctx, not saved for backward: x may be a tuple, and nothing changes it.
        ctx.linearised = linearised  # type: ignore[attr-defined]
        ctx.inputs = x  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(primal)
        return primal, tangent

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, _: torch.Tensor, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        grads = ctx.linearised.pullback(ctx.inputs, grad)  # type: ignore[attr-defined]
        return (None, None, *grads)
