"""Helpers shared by tests (import as ``tests.helpers``)."""

from __future__ import annotations

import torch

from tmc.common.models import MaterializedBase


def randomize_batchnorm(network: torch.nn.Module, seed: int = 0) -> None:
    """Give BN layers non-trivial statistics and affine values (a fresh BN is the identity,
    which would hide mistakes in the normalisation rules)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)


def random_delta(
    base: MaterializedBase, *, seed: int, scale: float = 0.01
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(shape, generator=generator) * scale
        for name, (shape, _) in base.tangent_shapes().items()
    }
