"""The generic engine: ``torch.func.jvp`` (``tmc.common.tangent.functional``) for networks
with an operation the dual-path engine has no rule for (LayerNorm, attention, GELU, ...).

Cached features come from cutting the traced network below its first tangent parameter
(``tmc.common.tangent.split``), done once, on first use: most models never need it.
Per-example gradients are taken on the plain network at θ0 (J(x)ᵀ·g needs first
derivatives only), because functorch cannot transform the ``torch.autograd.Function``
through which this engine trains Δ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from tmc.common.errors import TangentError
from tmc.common.tangent.backend import Inputs, Linearised, Lookup, PathName, TangentBackend, output
from tmc.common.tangent.dual import Dual
from tmc.common.tangent.functional import JvpForward
from tmc.common.tangent.graph import DeltaLookup
from tmc.common.tangent.split import Features, FrozenSplit, split_frozen


class JvpBackend(TangentBackend):
    """f_lin of any network whose forward is a function of its parameters and buffers."""

    name: PathName = "jvp"

    def __init__(self, network: nn.Module, tangent_names: tuple[str, ...]) -> None:
        super().__init__()
        self._network = (network,)  # a tuple: the model registers the network, not this
        self.names = tangent_names
        self._forward = JvpForward(network, tangent_names)
        self._split: FrozenSplit | None = None
        self._split_done = False

    def _cut(self) -> FrozenSplit | None:
        if not self._split_done:
            self._split = split_frozen(self._network[0], self.names)
            self._split_done = True
        return self._split

    def _suffix(self) -> FrozenSplit:
        split = self._cut()
        if split is None:  # pragma: no cover - frozen_features returned None then
            raise TangentError("this network has no frozen part to start from")
        return split

    def forward_dual(self, x: torch.Tensor, delta: DeltaLookup) -> Dual:
        return self._forward(x, delta)

    def frozen_features(self, x: torch.Tensor) -> Features | None:
        split = self._cut()
        if split is None:
            return None
        features: Features = split.prefix(x)
        return features

    def forward_dual_features(self, features: Features, delta: DeltaLookup) -> Dual:
        return JvpForward(self._suffix().suffix, self.names)(features, delta)

    def linearised(
        self, delta: Callable[[], dict[str, torch.Tensor]], *, features: bool
    ) -> Linearised:
        """``inner`` is the plain network (or the suffix above the cut) at θ0."""
        network = self._suffix().suffix if features else self._network[0]
        state = {**dict(network.named_parameters()), **dict(network.named_buffers())}
        jvp = JvpForward(network, self.names)

        def logits(x: Inputs, d: Lookup) -> torch.Tensor:
            return output(jvp(x, d))

        def plain(x: Inputs, params: Lookup) -> torch.Tensor:
            out: torch.Tensor = functional_call(network, {**state, **params}, (x,))
            return out

        def theta0() -> dict[str, torch.Tensor]:
            return {n: state[n].detach() for n in self.names}

        return Linearised(self.names, logits, plain, theta0, delta)
