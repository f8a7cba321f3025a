"""The two execution paths of the tangent forward agree with each other and with jvp.

No grad needed → primal and tangent stacked along the batch, in-place where safe, folded
Δ kernels cached. Gradient needed → two tensors, and for each folded conv-BN the cheaper of
the weight-side and activation-side forms of the same tangent.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import random_delta, randomize_batchnorm
from tmc.common.models import BaseModelSpec, MaterializedBase, materialize
from tmc.common.tangent import TangentModel, jvp_forward, jvp_forward_dual
from tmc.common.tangent.fusion import FusedConvBatchNorm

ATOL = 1e-5


def _base(architecture: str, channels: int, scope: str) -> MaterializedBase:
    spec = BaseModelSpec(
        architecture=architecture, num_classes=10, in_channels=channels, tangent=scope
    )
    base = materialize(spec)
    randomize_batchnorm(base.network)
    return base


def _grads(model: TangentModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(x).pow(2).sum().backward()
    params = dict(zip(model.tangent_names, model.delta_parameters(), strict=True))
    return {n: p.grad for n, p in params.items() if p.grad is not None}


def _jvp_grads(
    network: nn.Module, delta: dict[str, torch.Tensor], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    leaves = {n: t.clone().requires_grad_(True) for n, t in delta.items()}
    jvp_forward(network, leaves, x).pow(2).sum().backward()
    return {n: t.grad for n, t in leaves.items() if t.grad is not None}


@pytest.mark.parametrize(
    ("architecture", "channels", "size", "batch", "scope"),
    [
        ("small-cnn", 1, 8, 16, "full"),  # large activations: weight-side Δ kernels
        ("small-cnn", 1, 8, 16, "all"),
        ("resnet18", 3, 32, 2, "full"),  # small activations: activation-side products
        ("resnet18", 3, 64, 8, "full"),  # both, depending on the stage
    ],
)
def test_stacked_and_pair_paths_equal_jvp(
    architecture: str, channels: int, size: int, batch: int, scope: str
) -> None:
    base = _base(architecture, channels, scope)
    model = TangentModel(base.network, base.tangent_names)
    delta = random_delta(base, seed=11)
    model.load_delta(delta)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        stacked_primal, stacked_tangent = model.forward_dual(x)
        ref_primal, ref_tangent = jvp_forward_dual(base.network, delta, x)
    pair_primal, pair_tangent = model.forward_dual(x)  # Δ requires grad: the pair path
    assert pair_tangent is not None
    assert pair_tangent.requires_grad
    assert stacked_tangent is not None
    for primal in (stacked_primal, pair_primal):
        torch.testing.assert_close(primal.detach(), ref_primal, atol=ATOL, rtol=0)
    for tangent in (stacked_tangent, pair_tangent):
        torch.testing.assert_close(tangent.detach(), ref_tangent, atol=ATOL, rtol=0)
    ours, ref = _grads(model, x), _jvp_grads(base.network, delta, x)
    assert ours.keys() == ref.keys() == set(base.tangent_names)
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], atol=1e-4, rtol=1e-4)


def _conv_bn(cin: int = 4, cout: int = 6, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=True)
    bn = nn.BatchNorm2d(cout)
    randomize_batchnorm(bn, seed=3)
    return conv.eval().requires_grad_(False), bn.eval().requires_grad_(False)


@pytest.mark.parametrize("with_tangent_input", [True, False])
@pytest.mark.parametrize("conv_keys", [("weight", "bias"), ("weight",), ()])
@pytest.mark.parametrize("bn_keys", [("weight", "bias"), ("weight",), ("bias",), ()])
def test_activation_side_equals_weight_side(
    with_tangent_input: bool, conv_keys: tuple[str, ...], bn_keys: tuple[str, ...]
) -> None:
    conv, bn = _conv_bn()
    fused = FusedConvBatchNorm(conv, bn)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 5, 5, generator=g)
    t = torch.randn(3, 4, 5, 5, generator=g) if with_tangent_input else None
    assert conv.bias is not None
    assert bn.running_mean is not None
    assert bn.running_var is not None
    primals = {"weight": conv.weight, "bias": conv.bias, "gamma": bn.weight, "beta": bn.bias}
    full = {name: torch.randn(p.shape, generator=g) for name, p in primals.items()}
    conv_delta = {k: full[k] for k in conv_keys}
    bn_delta = {k: full[{"weight": "gamma", "bias": "beta"}[k]] for k in bn_keys}
    deltas = (
        conv_delta.get("weight"),
        conv_delta.get("bias"),
        bn_delta.get("weight"),
        bn_delta.get("bias"),
    )
    y_w, t_w = fused.dual(x, t, conv_delta, bn_delta)  # no grad needed: weight side
    y_a, t_a = fused._activation_side(x, t, deltas)

    def conv_bn(
        inp: torch.Tensor, w: torch.Tensor, b: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor
    ) -> torch.Tensor:
        u = F.conv2d(inp, w, b, padding=1)
        mean, var = bn.running_mean, bn.running_var
        return F.batch_norm(u, mean, var, gamma, beta, eps=bn.eps)

    directions = [
        torch.zeros_like(x) if t is None else t,
        *(
            d if d is not None else torch.zeros_like(p)
            for d, p in zip(deltas, primals.values(), strict=True)
        ),
    ]
    ref_y, ref_t = torch.func.jvp(conv_bn, (x, *primals.values()), tuple(directions))[:2]
    for y in (y_w, y_a):
        torch.testing.assert_close(y, ref_y, atol=ATOL, rtol=0)
    for tangent in (t_w, t_a):
        if tangent is None:  # no Δ and no incoming tangent: exactly zero
            assert (with_tangent_input, conv_keys, bn_keys) == (False, (), ())
            torch.testing.assert_close(ref_t, torch.zeros_like(ref_t))
        else:
            torch.testing.assert_close(tangent, ref_t, atol=ATOL, rtol=1e-5)


def test_cached_kernels_follow_delta_changes() -> None:
    base = _base("small-cnn", 1, "full")
    model = TangentModel(base.network, base.tangent_names)
    x = torch.randn(8, 1, 8, 8)
    for seed in (1, 2):  # in-place changes of the model's own Δ
        delta = random_delta(base, seed=seed)
        model.load_delta(delta)
        with torch.no_grad():
            torch.testing.assert_close(
                model(x), jvp_forward(base.network, delta, x), atol=ATOL, rtol=0
            )
    optimiser = torch.optim.SGD(model.delta_parameters(), lr=0.1)
    model(x).sum().backward()
    optimiser.step()
    with torch.no_grad():
        after = model(x)
        torch.testing.assert_close(
            after, jvp_forward(base.network, model.delta_state(), x), atol=ATOL, rtol=0
        )
        for seed in (3, 4):  # explicit Δ mappings, new tensors each time
            delta = random_delta(base, seed=seed)
            torch.testing.assert_close(
                model(x, delta), jvp_forward(base.network, delta, x), atol=ATOL, rtol=0
            )


def test_no_grad_forward_leaves_its_input_and_repeats_exactly() -> None:
    base = _base("resnet18", 3, "full")
    model = TangentModel(base.network, base.tangent_names)
    model.load_delta(random_delta(base, seed=4))
    x = torch.randn(2, 3, 32, 32)
    before = x.clone()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(x, before)
    assert torch.equal(first, second)


class _Branchy(nn.Module):
    """Ops the ResNets do not exercise: reuse of one activation by several consumers
    (also twice by one), a constant addend, functional ReLU, flatten from dim 0,
    reshape, max-pool and a standalone BN inside the tangent region."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm = nn.BatchNorm1d(16)
        self.fc = nn.Linear(16, 3)
        self.drop = nn.Dropout(0.5)
        self.flat = nn.Flatten()
        self.same = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn(self.conv(x)))
        b = self.conv2(a) + a + 1.0
        c = F.relu(b + b)
        d = self.pool(c)
        e = self.same(torch.flatten(d, 1)) + self.flat(d)
        f = torch.flatten(e.reshape(-1, 4, 4), 0).reshape(-1, 16)
        return self.fc(self.drop(self.norm(f)))


@pytest.mark.parametrize("scope", ["all", "late"])
def test_branchy_graph_both_paths(scope: str) -> None:
    torch.manual_seed(0)
    network = _Branchy().eval()
    randomize_batchnorm(network)
    names = tuple(
        n
        for n, _ in network.named_parameters()
        if scope == "all" or n.startswith(("conv2", "norm", "fc"))
    )
    model = TangentModel(network, names)
    g = torch.Generator().manual_seed(9)
    delta = {
        n: torch.randn(p.shape, generator=g) * 0.1
        for n, p in network.named_parameters()
        if n in names
    }
    model.load_delta(delta)
    x = torch.randn(5, 2, 4, 4, generator=g)
    with torch.no_grad():
        stacked = model(x)
        ref = jvp_forward(network, delta, x)
    torch.testing.assert_close(stacked, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(model(x).detach(), ref, atol=ATOL, rtol=0)
    ours, expected = _grads(model, x), _jvp_grads(network, delta, x)
    for name in expected:
        torch.testing.assert_close(ours[name], expected[name], atol=1e-4, rtol=1e-4)


def test_input_gradient_without_delta_gradient() -> None:
    """x may require grad while Δ does not: the pair path, with cached kernels."""
    base = _base("small-cnn", 1, "full")
    model = TangentModel(base.network, base.tangent_names)
    delta = random_delta(base, seed=2)
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    model(x, delta).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    jvp_forward(base.network, delta, x_ref).sum().backward()
    assert x.grad is not None
    assert x_ref.grad is not None
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_both_paths_on_cuda() -> None:  # pragma: no cover - GPU machines only
    base = _base("resnet18", 3, "full")
    model = TangentModel(base.network, base.tangent_names).cuda()
    delta = random_delta(base, seed=10)
    model.load_delta(delta)
    network = base.network.cuda()
    cuda_delta = {n: t.cuda() for n, t in delta.items()}
    x = torch.randn(8, 3, 64, 64, device="cuda")
    with torch.no_grad():
        ref = jvp_forward(network, cuda_delta, x)
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model(x).detach(), ref, atol=1e-4, rtol=1e-4)
    ours, expected = _grads(model, x), _jvp_grads(network, cuda_delta, x)
    for name in expected:
        torch.testing.assert_close(ours[name], expected[name], atol=1e-3, rtol=1e-3)


def test_cached_kernels_follow_the_model_to_another_dtype() -> None:
    base = _base("small-cnn", 1, "full")
    model = TangentModel(base.network, base.tangent_names)
    delta = random_delta(base, seed=6)
    model.load_delta(delta)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        model(x)  # fills the cache with float32 kernels
        model.to(torch.float64)
        ours = model(x.double())
        ref = jvp_forward(base.network, {n: t.double() for n, t in delta.items()}, x.double())
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)  # θ0 folded in float32
