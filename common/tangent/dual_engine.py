"""The dual-path engine: the base's graph compiled into steps (``tmc.common.tangent.compile``).

Below the first tangent layer the network runs once, plainly; from there on each step
carries a (primal, tangent) pair. Where nothing needs a gradient the pair travels stacked
along the batch and each folded conv-BN keeps its Δ-derived kernel until Δ changes; where
Δ or the input needs a gradient, primal and tangent are separate tensors, so that
backward runs through the tangent path only. Both give the same numbers up to rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tmc.common.tangent.backend import Inputs, Linearised, Lookup, PathName, TangentBackend, output
from tmc.common.tangent.compile import compile_network
from tmc.common.tangent.dual import Dual, DualValue
from tmc.common.tangent.graph import DeltaLookup, Env
from tmc.common.tangent.split import Features


def _module_key(path: str) -> str:
    # ModuleDict keys cannot contain dots; torch module paths never hold "__".
    return path.replace(".", "__")


class DualPathBackend(TangentBackend):
    """The compiled network; a TangentError when some operation has no rule."""

    name: PathName = "dual"

    def __init__(self, network: nn.Module, tangent_names: tuple[str, ...]) -> None:
        super().__init__()
        compiled = compile_network(network, frozenset(tangent_names))
        self.names = tangent_names
        self._input, self._steps, self._output = compiled.input, compiled.steps, compiled.output
        self._live, self._frontier = compiled.live, compiled.frontier
        self.fused = nn.ModuleDict({_module_key(k): v for k, v in compiled.fused.items()})

    def forward_dual(self, x: torch.Tensor, delta: DeltaLookup) -> Dual:
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(t.requires_grad for t in delta.values())
        )
        env: Env = {self._input: DualValue(x, None)}
        for step in self._steps:
            env[step.name] = (step.pair if needs_grad else step.stacked)(env, delta)
            for name in step.frees:
                del env[name]
        return env[self._output].pair()

    def frozen_features(self, x: torch.Tensor) -> Features | None:
        env: Env = {self._input: DualValue(x, None)}
        keep = set(self._frontier)
        for step in self._steps:
            if step.name in self._live:
                continue
            env[step.name] = step.stacked(env, {})
            for name in step.frees:
                if name not in keep:
                    del env[name]
        return tuple(env[n].primal for n in self._frontier)

    def forward_dual_features(self, features: Features, delta: DeltaLookup) -> Dual:
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in delta.values())
        env: Env = {n: DualValue(f, None) for n, f in zip(self._frontier, features, strict=True)}
        for step in self._steps:
            if step.name not in self._live:
                continue
            env[step.name] = (step.pair if needs_grad else step.stacked)(env, delta)
            for name in step.frees:
                env.pop(name, None)
        return env[self._output].pair()

    def linearised(
        self, delta: Callable[[], dict[str, torch.Tensor]], *, features: bool
    ) -> Linearised:
        """f_lin itself: its gradient w.r.t. Δ, taken by ``vmap(grad(...))`` through the
        pair form, is the per-example J(x)ᵀ·g."""

        def forward(x: Inputs, d: Lookup) -> torch.Tensor:
            if features:
                return output(self.forward_dual_features(x, d))  # type: ignore[arg-type]
            return output(self.forward_dual(x, d))  # type: ignore[arg-type]

        return Linearised(self.names, forward, forward, delta, delta)
