"""The tangent model: f_lin(x; θ0 + Δ) = f(x; θ0) + J_θ f(x; θ0) · Δ, computed exactly.

θ0 stays in the frozen base network; Δ lives here as trainable parameters, one per tangent
parameter of the base. The computation is delegated to one backend
(``tmc.common.tangent.backend``), chosen here, once, when the model is built: the
dual-path engine (``tmc.common.tangent.dual_engine``) when every operation of the network
has a rule, the generic ``torch.func.jvp`` engine (``tmc.common.tangent.jvp_engine``)
otherwise. ``path`` says which one runs, ``fallback_reason`` why. Normalisation always
runs in eval mode, so the output is exactly linear in Δ.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import torch
from torch import nn

from tmc.common.components.validation import check_delta_schema
from tmc.common.errors import TangentError
from tmc.common.tangent.backend import Linearised, PathName, TangentBackend, output
from tmc.common.tangent.dual import Tangent
from tmc.common.tangent.dual_engine import DualPathBackend
from tmc.common.tangent.graph import DeltaLookup
from tmc.common.tangent.jvp_engine import JvpBackend
from tmc.common.tangent.split import Features, is_per_example

PathChoice = Literal["auto", "dual", "jvp"]


def _parameter_key(name: str) -> str:
    # nn.ParameterDict / ModuleDict keys cannot contain dots; torch names never hold "__".
    return name.replace(".", "__")


def select_backend(
    network: nn.Module, tangent_names: tuple[str, ...], path: PathChoice
) -> tuple[TangentBackend, str | None]:
    """The backend for ``path``, and why the dual-path engine was not taken (``None``
    when it was, or when ``jvp`` was asked for). ``dual`` raises the TangentError."""
    if path == "jvp":
        return JvpBackend(network, tangent_names), None
    try:
        return DualPathBackend(network, tangent_names), None
    except TangentError as exc:
        if path == "dual":
            raise
        return JvpBackend(network, tangent_names), str(exc)


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
        engine, reason = select_backend(network, self.tangent_names, path)
        self.engine: TangentBackend = engine
        """The backend that computes f_lin (callers never need to know which one)."""
        self.fallback_reason: str | None = reason
        """Why the engine could not compile the network (``None`` on the dual path)."""

    @property
    def path(self) -> PathName:
        """Which backend runs: ``dual`` (the dual-path engine) or ``jvp``."""
        return self.engine.name

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
        """(f(x; θ0), J·Δ); the tangent is ``None`` when no Δ reaches the output."""
        return self.engine.forward_dual(x, self._lookup(delta))

    def forward(self, x: torch.Tensor, delta: DeltaLookup | None = None) -> torch.Tensor:
        return output(self.forward_dual(x, delta))

    # -- cached features -------------------------------------------------------------------

    @torch.no_grad()
    def frozen_features(self, x: torch.Tensor) -> Features | None:
        """What the frozen part below the first tangent layer hands over for ``x`` (one row
        per example), or ``None`` when nothing can be cached (the network cannot be split,
        or what crosses the cut is not a tensor per example). ``forward_features`` on these
        gives exactly ``forward(x)``: the same operations on the same values."""
        features = self.engine.frozen_features(x)
        if features is None or not is_per_example(features, x.shape[0]):
            return None
        if len(features) == 1 and features[0] is x:
            return None
        return features

    def forward_features(
        self, features: Features, delta: DeltaLookup | None = None
    ) -> torch.Tensor:
        """``forward`` from the output of ``frozen_features`` (the part above the cut)."""
        return output(self.forward_dual_features(features, delta))

    def forward_dual_features(
        self, features: Features, delta: DeltaLookup | None = None
    ) -> tuple[torch.Tensor, Tangent]:
        return self.engine.forward_dual_features(features, self._lookup(delta))

    def linearised(self, *, features: bool = False) -> Linearised:
        """What DP-SGD needs for per-example gradients w.r.t. Δ, on images or (``features``)
        on the output of ``frozen_features``."""
        return self.engine.linearised(self.delta_state, features=features)
