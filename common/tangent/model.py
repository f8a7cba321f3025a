"""The tangent model: f_lin(x; θ0 + Δ) = f(x; θ0) + J_θ f(x; θ0) · Δ, computed exactly.

θ0 stays in the frozen base network; Δ lives here as trainable parameters, one per tangent
parameter of the base. The forward pass runs the base's graph compiled into dual-path
steps (``common.tangent.compile``): below the first tangent layer it runs once, plainly;
from there on it carries (primal, tangent) pairs. Normalisation always runs in eval mode,
so the output is exactly linear in Δ.

Where nothing needs a gradient, the pair travels stacked along the batch and each folded
conv-BN keeps its Δ-derived kernel until Δ changes (one Δ-sized cache). Where Δ or the input
needs a gradient, primal and tangent are separate tensors, so that backward runs through the
tangent path only. Both paths compute the same numbers up to float rounding.

A network with an operation the engine has no rule for (LayerNorm, attention, GELU, ...)
runs on the generic path instead (``common.tangent.functional``: ``torch.func.jvp``), chosen
when the model is built; ``path`` says which one runs, ``fallback_reason`` why.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import torch
from torch import nn

from tmc.common.components.validation import check_delta_schema
from tmc.common.errors import TangentError
from tmc.common.tangent.compile import DeltaLookup, Env, compile_network
from tmc.common.tangent.dual import DualValue, Tangent
from tmc.common.tangent.functional import JvpForward
from tmc.common.tangent.split import Features, FrozenSplit, is_per_example, split_frozen

PathName = Literal["dual", "jvp"]
PathChoice = Literal["auto", "dual", "jvp"]


def _parameter_key(name: str) -> str:
    # nn.ParameterDict / ModuleDict keys cannot contain dots; torch names never hold "__".
    return name.replace(".", "__")


class TangentModel(nn.Module):
    """A frozen base network linearised around θ0 in the parameters ``tangent_names``.

    ``forward(x)`` returns f(x; θ0) + J·Δ with this module's Δ, or with ``delta`` when one is
    given (base parameter name → tensor): that evaluates any component or composition
    without copying it in.

    ``path``: ``auto`` (default) uses the dual-path engine when every operation of the
    network has a rule and ``torch.func.jvp`` otherwise; ``dual`` refuses a network the
    engine cannot compile (TangentError); ``jvp`` always takes the generic path.
    """

    def __init__(
        self, network: nn.Module, tangent_names: tuple[str, ...], *, path: PathChoice = "auto"
    ) -> None:
        super().__init__()
        network.eval()
        network.requires_grad_(False)
        self.base = network
        params = dict(network.named_parameters())
        unknown = [n for n in tangent_names if n not in params]
        if unknown:
            raise TangentError(f"tangent parameters not in the network: {unknown[:5]}")
        self.tangent_names: tuple[str, ...] = tuple(sorted(tangent_names))
        self.delta = nn.ParameterDict(
            {
                _parameter_key(n): nn.Parameter(torch.zeros_like(params[n]))
                for n in self.tangent_names
            }
        )
        self.fallback_reason: str | None = None
        """Why the engine could not compile the network (``None`` on the dual path)."""
        self.fused = nn.ModuleDict()
        self._jvp = JvpForward(network, self.tangent_names)
        self.path: PathName = "jvp"
        self._live: frozenset[str] = frozenset()
        self._frontier: tuple[str, ...] = ()
        self._split: FrozenSplit | None = None
        self._split_done = False
        if path != "jvp":
            try:
                compiled = compile_network(network, frozenset(self.tangent_names))
            except TangentError as exc:
                if path == "dual":
                    raise
                self.fallback_reason = str(exc)
            else:
                self.path = "dual"
                self._input, self._steps = compiled.input, compiled.steps
                self._output = compiled.output
                self._live, self._frontier = compiled.live, compiled.frontier
                self.fused.update({_parameter_key(k): v for k, v in compiled.fused.items()})

    # -- Δ ---------------------------------------------------------------------------------

    def delta_parameters(self) -> Iterator[nn.Parameter]:
        """The trainable Δ parameters (what an optimiser gets), in ``tangent_names`` order
        (``nn.ParameterDict`` lists its keys in its own order)."""
        return iter([self.delta[_parameter_key(n)] for n in self.tangent_names])

    def delta_state(self) -> dict[str, torch.Tensor]:
        """Δ keyed by base parameter name, detached (sharing storage with the parameters)."""
        return {n: self.delta[_parameter_key(n)].detach() for n in self.tangent_names}

    def delta_shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: tuple(self.delta[_parameter_key(n)].shape) for n in self.tangent_names}

    def load_delta(self, delta: Mapping[str, torch.Tensor]) -> None:
        """Copy ``delta`` into this model's Δ; keys and shapes must match exactly."""
        check_delta_schema(delta, self.delta_shapes())
        with torch.no_grad():
            for name in self.tangent_names:
                self.delta[_parameter_key(name)].copy_(delta[name])

    def reset_delta(self) -> None:
        """Back to Δ = 0: the base model itself."""
        with torch.no_grad():
            for p in self.delta.values():
                p.zero_()

    # -- forward ---------------------------------------------------------------------------

    def train(self, mode: bool = True) -> TangentModel:
        """Δ can train; the base always stays in eval mode (frozen normalisation statistics)."""
        super().train(mode)
        self.base.eval()
        return self

    def _lookup(self, delta: DeltaLookup | None) -> DeltaLookup:
        if delta is not None:
            return delta
        return {n: self.delta[_parameter_key(n)] for n in self.tangent_names}

    def forward_dual(
        self, x: torch.Tensor, delta: DeltaLookup | None = None
    ) -> tuple[torch.Tensor, Tangent]:
        """(f(x; θ0), J·Δ); the tangent is ``None`` when no Δ reaches the output.

        On the dual path, where nothing needs a gradient the primal and tangent travel
        stacked along the batch (one call of each W0 layer for both); otherwise as two
        tensors, so that backward runs through the tangent path only."""
        lookup = self._lookup(delta)
        if self.path == "jvp":
            return self._jvp(x, lookup)
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(t.requires_grad for t in lookup.values())
        )
        env: Env = {self._input: DualValue(x, None)}
        for step in self._steps:
            env[step.name] = (step.pair if needs_grad else step.stacked)(env, lookup)
            for name in step.frees:
                del env[name]
        return env[self._output].pair()

    def forward(self, x: torch.Tensor, delta: DeltaLookup | None = None) -> torch.Tensor:
        primal, tangent = self.forward_dual(x, delta)
        return primal if tangent is None else primal + tangent

    # -- cached features -------------------------------------------------------------------

    def _jvp_split(self) -> FrozenSplit | None:
        if not self._split_done:  # traced once, on first use: most models never need it
            self._split = split_frozen(self.base, self.tangent_names)
            self._split_done = True
        return self._split

    @torch.no_grad()
    def frozen_features(self, x: torch.Tensor) -> Features | None:
        """What the frozen part below the first tangent layer hands over for ``x`` (one row
        per example), or ``None`` when nothing can be cached (the network cannot be split,
        or what crosses the cut is not a tensor per example). ``forward_features`` on these
        gives exactly ``forward(x)``: the same operations on the same values."""
        if self.path == "dual":
            env: Env = {self._input: DualValue(x, None)}
            keep = set(self._frontier)
            for step in self._steps:
                if step.name in self._live:
                    continue
                env[step.name] = step.stacked(env, {})
                for name in step.frees:
                    if name not in keep:
                        del env[name]
            features: Features = tuple(env[n].primal for n in self._frontier)
        else:
            split = self._jvp_split()
            if split is None:
                return None
            features = split.prefix(x)
        if not is_per_example(features, x.shape[0]) or (len(features) == 1 and features[0] is x):
            return None
        return features

    def forward_features(
        self, features: Features, delta: DeltaLookup | None = None
    ) -> torch.Tensor:
        """``forward`` from the output of ``frozen_features`` (the part above the cut)."""
        primal, tangent = self.forward_dual_features(features, delta)
        return primal if tangent is None else primal + tangent

    def forward_dual_features(
        self, features: Features, delta: DeltaLookup | None = None
    ) -> tuple[torch.Tensor, Tangent]:
        lookup = self._lookup(delta)
        if self.path == "jvp":
            split = self._jvp_split()
            if split is None:  # pragma: no cover - frozen_features returned None then
                raise TangentError("this network has no frozen part to start from")
            return JvpForward(split.suffix, self.tangent_names)(features, lookup)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in lookup.values())
        env: Env = {n: DualValue(f, None) for n, f in zip(self._frontier, features, strict=True)}
        for step in self._steps:
            if step.name not in self._live:
                continue
            env[step.name] = (step.pair if needs_grad else step.stacked)(env, lookup)
            for name in step.frees:
                env.pop(name, None)
        return env[self._output].pair()
