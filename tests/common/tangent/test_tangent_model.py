"""The tangent forward is exact on both paths (the dual-path engine and the generic
``torch.func.jvp`` path): it equals ``torch.func.jvp`` and is linear in Δ."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import random_delta, randomize_batchnorm
from tmc.common.errors import ComponentSchemaError, TangentError
from tmc.common.models import BaseModelSpec, MaterializedBase, materialize
from tmc.common.tangent import PathChoice, TangentModel, jvp_forward, jvp_forward_dual

CASES = [
    ("small-cnn", 1, 8, "full"),
    ("small-cnn", 1, 8, "last-stage"),
    ("small-cnn", 1, 13, "all"),
    ("resnet18", 3, 32, "full"),
    ("resnet18", 3, 32, "last-stage"),
    ("resnet18", 3, 32, "all"),
]


def _base(architecture: str, channels: int, scope: str) -> MaterializedBase:
    spec = BaseModelSpec(
        architecture=architecture, num_classes=10, in_channels=channels, tangent=scope
    )
    base = materialize(spec)
    randomize_batchnorm(base.network)
    return base


PATHS = ("dual", "jvp")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("architecture", "channels", "size", "scope"), CASES)
def test_tangent_output_equals_torch_func_jvp(
    architecture: str, channels: int, size: int, scope: str, path: PathChoice
) -> None:
    base = _base(architecture, channels, scope)
    model = TangentModel(base.network, base.tangent_names, path=path)
    assert model.path == path
    delta = random_delta(base, seed=1)
    model.load_delta(delta)
    x = torch.randn(4, channels, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        primal, tangent = model.forward_dual(x)
        ref_primal, ref_tangent = jvp_forward_dual(base.network, delta, x)
        plain = base.network(x)
    assert tangent is not None
    torch.testing.assert_close(primal, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(tangent, ref_tangent, atol=1e-5, rtol=0)
    torch.testing.assert_close(primal + tangent, ref_primal + ref_tangent, atol=1e-5, rtol=0)


@pytest.mark.parametrize("path", PATHS)
def test_gradient_wrt_delta_equals_autograd_through_jvp(path: PathChoice) -> None:
    base = _base("resnet18", 3, "last-stage")
    model = TangentModel(base.network, base.tangent_names, path=path)
    delta = random_delta(base, seed=3)
    model.load_delta(delta)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    model(x).pow(2).sum().backward()
    ours = {n: p.grad for n, p in zip(model.tangent_names, model.delta_parameters(), strict=True)}
    ref_delta = {n: t.clone().requires_grad_(True) for n, t in delta.items()}
    jvp_forward(base.network, ref_delta, x).pow(2).sum().backward()
    for name in model.tangent_names:
        torch.testing.assert_close(ours[name], ref_delta[name].grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("path", PATHS)
def test_output_is_linear_in_delta(path: PathChoice) -> None:
    base = _base("small-cnn", 1, "full")
    model = TangentModel(base.network, base.tangent_names, path=path)
    d1, d2 = random_delta(base, seed=5), random_delta(base, seed=6)
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        f0 = model(x, {n: torch.zeros_like(t) for n, t in d1.items()})
        combined = model(x, {n: 0.3 * d1[n] + 0.7 * d2[n] for n in d1})
        separate = 0.3 * model(x, d1) + 0.7 * model(x, d2)
    torch.testing.assert_close(combined, separate, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        model(x, d1) - f0, -(model(x, {n: -t for n, t in d1.items()}) - f0), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("path", PATHS)
def test_base_stays_in_eval_mode_and_frozen(path: PathChoice) -> None:
    base = _base("small-cnn", 1, "full")
    before = {k: v.clone() for k, v in base.network.state_dict().items()}
    model = TangentModel(base.network, base.tangent_names, path=path)
    model.train()
    assert not base.network.training
    assert all(not p.requires_grad for p in base.network.parameters())
    model.load_delta(random_delta(base, seed=7))
    x = torch.randn(16, 1, 8, 8)
    train_out = model(x)
    model(x).sum().backward()
    model.eval()
    torch.testing.assert_close(model(x), train_out)
    for key, value in base.network.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("path", PATHS)
def test_zero_delta_gives_the_base_network(path: PathChoice) -> None:
    base = _base("resnet18", 3, "full")
    model = TangentModel(base.network, base.tangent_names, path=path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base.network(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("path", PATHS)
def test_load_delta_rejects_wrong_keys_and_shapes(path: PathChoice) -> None:
    base = _base("small-cnn", 1, "full")
    model = TangentModel(base.network, base.tangent_names, path=path)
    delta = random_delta(base, seed=8)
    name = next(iter(delta))
    with pytest.raises(ComponentSchemaError, match="missing"):
        model.load_delta({k: v for k, v in delta.items() if k != name})
    with pytest.raises(ComponentSchemaError, match="shapes"):
        model.load_delta({**delta, name: torch.zeros(3)})


class _Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


def test_operation_without_rule_takes_the_jvp_path_or_is_refused_on_dual() -> None:
    with pytest.raises(TangentError, match="GELU"):
        TangentModel(_Gelu(), ("fc.weight",), path="dual")
    model = TangentModel(_Gelu(), ("fc.weight",))
    assert model.path == "jvp"
    assert model.fallback_reason is not None
    assert "GELU" in model.fallback_reason


def test_every_zoo_cnn_runs_on_the_engine_by_default() -> None:
    for architecture, channels in (("small-cnn", 1), ("resnet18", 3)):
        base = _base(architecture, channels, "full")
        model = TangentModel(base.network, base.tangent_names)
        assert (model.path, model.fallback_reason) == ("dual", None)


def test_unknown_tangent_parameter_is_refused() -> None:
    with pytest.raises(TangentError, match="not in the network"):
        TangentModel(_Gelu(), ("nope.weight",))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("path", PATHS)
def test_tangent_matches_jvp_on_cuda(path: PathChoice) -> None:  # pragma: no cover - GPU only
    base = _base("resnet18", 3, "full")
    model = TangentModel(base.network, base.tangent_names, path=path).cuda()
    delta = {n: t.cuda() for n, t in random_delta(base, seed=9).items()}
    x = torch.randn(4, 3, 32, 32, device="cuda")
    with torch.no_grad():
        ours = model(x, delta)
        ref = jvp_forward(base.network.cuda(), delta, x)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
