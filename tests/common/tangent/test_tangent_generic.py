"""Any ``nn.Module`` as a base: depthwise convs, other activations, LayerNorm, attention.

One suite for both paths. The expected values do not come from ``torch.func.jvp`` (the
generic path's own implementation) but from finite differences of the plain network in
float64 (J·Δ) and from reverse-mode ``torch.func.vjp`` at θ0 (the gradient w.r.t. Δ).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.func import functional_call, vjp

from tests.helpers import randomize_batchnorm
from tmc.common.models import efficientnet_lite0
from tmc.common.tangent import PathName, TangentModel


def _mobilenet() -> nn.Module:
    # Inverted residuals with depthwise convs, squeeze-excitation (a product of two
    # activations), Hardswish and Hardsigmoid: the engine has no rule for them.
    return torchvision.models.mobilenet_v3_small(num_classes=5, width_mult=0.25)


class _Depthwise(nn.Module):
    """What EfficientNet-Lite is made of, small: a TF-"same" padded stride-2 depthwise conv,
    ReLU6, an inverted residual with its skip."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 8, 1), nn.BatchNorm2d(8), nn.ReLU6())
        self.down = nn.Sequential(
            nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, 2, groups=8), nn.BatchNorm2d(8)
        )
        self.block = nn.Sequential(
            nn.Conv2d(8, 16, 1), nn.ReLU6(), nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.ReLU6()
        )
        self.project = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(self.stem(x))
        y = self.project(self.block(y)) + y
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def _lite() -> nn.Module:
    return efficientnet_lite0(num_classes=5, in_channels=1, input_size=32)


def _vit() -> nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=16,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    )


NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int], tuple[str, ...]]] = {
    # name: (builder, (channels, side), tangent prefixes)
    "depthwise": (_Depthwise, (2, 8), ("down", "block", "project", "fc")),
    "mobilenet_v3": (_mobilenet, (3, 32), ("features.10", "features.11", "classifier")),
    "efficientnet_lite0": (_lite, (1, 28), ("layer6", "layer7", "fc")),
    "vit": (_vit, (3, 16), ("encoder.layers.encoder_layer_1", "encoder.ln", "heads")),
}
EXPECTED_PATHS: dict[str, tuple[PathName, ...]] = {
    "depthwise": ("dual", "jvp"),
    "mobilenet_v3": ("jvp",),
    "efficientnet_lite0": ("dual", "jvp"),  # every op of it has an engine rule
    "vit": ("jvp",),
}


def _setup(name: str) -> tuple[nn.Module, tuple[str, ...], dict[str, torch.Tensor], torch.Tensor]:
    build, (channels, side), prefixes = NETWORKS[name]
    torch.manual_seed(0)
    network = build().eval().requires_grad_(False)
    randomize_batchnorm(network)
    names = tuple(
        n for n, _ in network.named_parameters() if n.startswith(tuple(p + "." for p in prefixes))
    )
    assert names
    g = torch.Generator().manual_seed(1)
    params = dict(network.named_parameters())
    delta = {n: 0.05 * torch.randn(params[n].shape, generator=g) for n in names}
    x = torch.randn(2, channels, side, side, generator=g)
    return network, names, delta, x


def _paths(*, skip: tuple[str, ...] = ()) -> list[tuple[str, PathName]]:
    return [
        (name, path) for name, paths in EXPECTED_PATHS.items() if name not in skip for path in paths
    ]


# EfficientNet-Lite0 in float64 costs seconds a call on the CPU: its two paths are checked
# against each other below, and each of its operations here, in the small depthwise net.
@pytest.mark.parametrize(("name", "path"), _paths(skip=("efficientnet_lite0",)))
def test_tangent_equals_finite_differences(name: str, path: PathName) -> None:
    network, names, delta, x = _setup(name)
    model = TangentModel(network, names, path=path)
    assert model.path == path
    model.load_delta(delta)
    with torch.no_grad():
        primal, tangent = model.forward_dual(x)
        plain = network(x)
    torch.testing.assert_close(primal, plain, atol=1e-5, rtol=0)
    assert tangent is not None
    # Central differences in float64: error O(ε²), far below the 1e-5 tolerance.
    wide = {k: v.double() for k, v in network.state_dict().items()}
    eps = 1e-4

    def at(sign: float) -> torch.Tensor:
        moved = {**wide, **{n: wide[n] + sign * eps * delta[n].double() for n in names}}
        with torch.no_grad():
            out: torch.Tensor = functional_call(network.double(), moved, (x.double(),))
        return out

    expected = (at(1.0) - at(-1.0)) / (2 * eps)
    network.float()
    torch.testing.assert_close(tangent.double(), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "path"), _paths())
def test_gradient_wrt_delta_equals_vjp_at_theta0(name: str, path: PathName) -> None:
    network, names, delta, x = _setup(name)
    model = TangentModel(network, names, path=path)
    model.load_delta(delta)
    out = model(x)
    out.pow(2).sum().backward()
    ours = dict(zip(model.tangent_names, model.delta_parameters(), strict=True))
    # f_lin = f(θ0) + JΔ, so ∇_Δ Σ f_lin² = Jᵀ (2 f_lin): one reverse-mode pass at θ0.
    state = {**dict(network.named_parameters()), **dict(network.named_buffers())}

    def f(*tangent_params: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = functional_call(
            network, {**state, **dict(zip(model.tangent_names, tangent_params, strict=True))}, (x,)
        )
        return result

    pullback = vjp(f, *(state[n] for n in model.tangent_names))[1]
    expected = pullback(2 * out.detach())
    for n, grad in zip(model.tangent_names, expected, strict=True):
        assert ours[n].grad is not None
        torch.testing.assert_close(ours[n].grad, grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_auto_chooses_the_engine_only_when_every_op_has_a_rule(name: str) -> None:
    network, names, _, _ = _setup(name)
    model = TangentModel(network, names)
    assert model.path == EXPECTED_PATHS[name][0]
    assert (model.fallback_reason is None) == (model.path == "dual")


def test_engine_equals_jvp_on_efficientnet_lite_and_runs_frozen_ops_without_rules() -> None:
    """Resizing (interpolate) and channel repetition below the first tangent layer run
    plainly on the engine; they need no rule."""
    network, names, delta, x = _setup("efficientnet_lite0")
    model = TangentModel(network, names, path="dual")
    reference = TangentModel(network, names, path="jvp")
    with torch.no_grad():
        ours, ref = model.forward_dual(x, delta), reference.forward_dual(x, delta)
    for a, b in zip(ours, ref, strict=True):
        assert a is not None
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
