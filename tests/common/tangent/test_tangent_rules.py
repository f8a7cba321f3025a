"""Every registered tangent rule against ``torch.func.jvp``, on one shared harness.

Like Opacus's per-layer grad-sampler tests, the cases are parametrised over the registry
(``tmc.common.tangent.ops.RULES``): each module type, function and method a rule covers
needs a sample here, or ``test_every_registered_target_has_a_sample`` fails. Two levels:

* the rule alone: its pair form, and its stacked form on [x; t] (allocating, and in place
  where it may overwrite its input), on a random input x, a random input tangent t and a
  random Δ of the op's own parameters, against the jvp of the op in (x, θ0) along (t, Δ);
* the rule inside a compiled network (how functions and methods are reached, with their
  other arguments): a tangent layer in front gives the op a non-zero input tangent, and
  the dual-path model's output pair is compared with the jvp of the whole network.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.func import functional_call, jvp

from tmc.common.tangent import TangentModel, jvp_forward_dual
from tmc.common.tangent.dual import DualValue
from tmc.common.tangent.ops import RULES, OpRule

TOL = 1e-5
SPREAD = 4.0
"""Inputs are SPREAD·N(0, 1): every piece of a piecewise-linear op is hit (ReLU6 above 6)."""
IMAGE = (2, 3, 6, 6)
VECTOR = (2, 5)


def _batch_norm_2d() -> nn.Module:
    return _with_statistics(nn.BatchNorm2d(3))


def _batch_norm_1d() -> nn.Module:
    return _with_statistics(nn.BatchNorm1d(5))


def _with_statistics(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """Eval-mode BN with non-trivial statistics and affine parameters."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        assert bn.running_mean is not None
        assert bn.running_var is not None
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
        bn.weight.copy_(torch.randn(bn.num_features, generator=generator))
        bn.bias.copy_(torch.randn(bn.num_features, generator=generator))
    return bn


MODULE_SAMPLES: dict[type[nn.Module], tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    nn.Conv2d: (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), IMAGE),
    nn.Linear: (lambda: nn.Linear(5, 4), VECTOR),
    nn.BatchNorm1d: (_batch_norm_1d, VECTOR),
    nn.BatchNorm2d: (_batch_norm_2d, IMAGE),
    nn.ReLU: (nn.ReLU, IMAGE),
    nn.ReLU6: (nn.ReLU6, IMAGE),
    nn.MaxPool2d: (lambda: nn.MaxPool2d(2), IMAGE),
    nn.AdaptiveAvgPool2d: (lambda: nn.AdaptiveAvgPool2d(2), IMAGE),
    nn.AvgPool2d: (lambda: nn.AvgPool2d(2), IMAGE),
    nn.ZeroPad2d: (lambda: nn.ZeroPad2d((1, 0, 2, 1)), IMAGE),
    nn.Flatten: (nn.Flatten, IMAGE),
    nn.Identity: (nn.Identity, IMAGE),
    nn.Dropout: (lambda: nn.Dropout(0.5), IMAGE),
}
"""A module of each registered type, and its input shape."""

UNARY_FUNCTIONS: dict[Callable[..., Any], tuple[int, ...]] = {
    F.relu: IMAGE,
    torch.relu: IMAGE,
    torch.relu_: IMAGE,
}
"""Functions a rule's pair form takes as they are (module ``None``), and an input shape."""


class _After(nn.Module):
    """lead → op: the lead's parameters are tangent, so the op sees a non-zero tangent
    (an Identity in between keeps a BN from being folded into a conv lead)."""

    def __init__(self, op: Callable[[torch.Tensor], torch.Tensor], image: bool) -> None:
        super().__init__()
        self.lead = nn.Conv2d(3, 3, 1) if image else nn.Linear(5, 5)
        self.gap = nn.Identity()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.gap(self.lead(x)))


class _Sum(nn.Module):
    """Two tangent branches added by ``add``."""

    def __init__(self, add: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.add = add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(self.a(x), self.b(x))


NETWORK_SAMPLES: dict[object, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    **{
        kind: (lambda make=make, shape=shape: _After(make(), shape == IMAGE), shape)
        for kind, (make, shape) in MODULE_SAMPLES.items()
    },
    F.relu: (lambda: _After(F.relu, True), IMAGE),
    torch.relu: (lambda: _After(torch.relu, True), IMAGE),
    torch.relu_: (lambda: _After(torch.relu_, True), IMAGE),
    F.adaptive_avg_pool2d: (lambda: _After(lambda z: F.adaptive_avg_pool2d(z, 2), True), IMAGE),
    F.avg_pool2d: (lambda: _After(lambda z: F.avg_pool2d(z, 3, stride=2, padding=1), True), IMAGE),
    torch.flatten: (lambda: _After(lambda z: torch.flatten(z, 1), True), IMAGE),
    torch.reshape: (lambda: _After(lambda z: torch.reshape(z, (3, -1)), True), IMAGE),
    operator.add: (lambda: _Sum(operator.add), IMAGE),
    torch.add: (lambda: _Sum(torch.add), IMAGE),
    "flatten": (lambda: _After(lambda z: z.flatten(2), True), IMAGE),
    "view": (lambda: _After(lambda z: z.view(2, 3, -1), True), IMAGE),
    "reshape": (lambda: _After(lambda z: z.reshape(6, -1), True), IMAGE),
    "contiguous": (lambda: _After(lambda z: z.contiguous(), True), IMAGE),
}
"""A network reaching each registered target through the compiler, and its input shape."""


def _targets(rule: OpRule) -> list[object]:
    return [*rule.modules, *rule.functions, *rule.methods]


def _label(target: object) -> str:
    if isinstance(target, str):
        return f".{target}()"
    name = getattr(target, "__name__", str(target))
    module = getattr(target, "__module__", "") or ""
    return f"{module.rsplit('.', 1)[-1]}.{name}" if module else name


ALL_TARGETS = [(rule, target) for rule in RULES for target in _targets(rule)]
UNARY_TARGETS = [
    (rule, target)
    for rule, target in ALL_TARGETS
    if isinstance(target, type) or (rule.node_steps is None and not isinstance(target, str))
]


def _ids(cases: list[tuple[OpRule, object]]) -> list[str]:
    return [f"{rule.name}-{_label(target)}" for rule, target in cases]


def _close(actual: torch.Tensor | None, expected: torch.Tensor) -> None:
    torch.testing.assert_close(
        torch.zeros_like(expected) if actual is None else actual, expected, atol=TOL, rtol=TOL
    )


def test_every_registered_target_has_a_sample() -> None:
    registered = {target for _, target in ALL_TARGETS}
    unary = {target for _, target in UNARY_TARGETS}
    assert registered == set(NETWORK_SAMPLES)
    assert unary == set(MODULE_SAMPLES) | set(UNARY_FUNCTIONS)
    assert len(registered) == len(ALL_TARGETS)  # no target has two rules


def _unary_sample(
    rule: OpRule, target: object
) -> tuple[nn.Module | None, Callable[..., torch.Tensor], tuple[int, ...]]:
    """(the module or None, the op as a function of (x, own parameters), input shape)."""
    if isinstance(target, type):
        make, shape = MODULE_SAMPLES[target]
        torch.manual_seed(3)
        module = make().eval()
        state = {**dict(module.named_parameters()), **dict(module.named_buffers())}

        def call(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
            out: torch.Tensor = functional_call(module, {**state, **params}, (x,))
            return out

        return module, call, shape
    fn: Callable[[torch.Tensor], torch.Tensor] = target  # type: ignore[assignment]
    return None, lambda x, _: fn(x.clone()), UNARY_FUNCTIONS[target]  # type: ignore[index]


@pytest.mark.parametrize("with_input_tangent", [True, False], ids=["t", "no-t"])
@pytest.mark.parametrize(("rule", "target"), UNARY_TARGETS, ids=_ids(UNARY_TARGETS))
def test_rule_equals_jvp(rule: OpRule, target: object, with_input_tangent: bool) -> None:
    module, call, shape = _unary_sample(rule, target)
    generator = torch.Generator().manual_seed(11)
    x = SPREAD * torch.randn(shape, generator=generator)
    t = torch.randn(shape, generator=generator) if with_input_tangent else None
    own = dict(module.named_parameters()) if module is not None and rule.reads_delta else {}
    delta = {n: torch.randn(p.shape, generator=generator) for n, p in own.items()}
    names = sorted(delta)

    def f(x_: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return call(x_, dict(zip(names, params, strict=True)))

    primals = (x, *(own[n].detach() for n in names))
    tangents = (torch.zeros_like(x) if t is None else t, *(delta[n] for n in names))
    expected_y, expected_t = jvp(f, primals, tangents)
    assert rule.pair is not None
    y, ty = rule.pair(module, x.clone(), None if t is None else t.clone(), delta)
    _close(y, expected_y)
    _close(ty, expected_t)
    if rule.stacked is None:
        return
    for fresh in (False, True):  # allocating, then overwriting its own input
        value = (
            DualValue.of_stack(torch.cat([x, t]), shape[0], fresh=fresh)
            if t is not None
            else DualValue(x.clone(), None, fresh=fresh)
        )
        out = rule.stacked(module, value, fresh, delta)
        assert out is not None, f"{rule.name}: the stacked form declined a batched input"
        _close(out.primal, expected_y)
        _close(out.tangent, expected_t)


def _reaches(network: nn.Module, target: object) -> bool:
    """The traced network has a node the rule's target stands for."""
    for node in fx.symbolic_trace(network).graph.nodes:
        if node.op == "call_module":
            if type(network.get_submodule(str(node.target))) is target:
                return True
        elif node.op in ("call_function", "call_method") and node.target == target:
            return True
    return False


@pytest.mark.parametrize(("rule", "target"), ALL_TARGETS, ids=_ids(ALL_TARGETS))
def test_rule_in_a_network_equals_jvp(rule: OpRule, target: object) -> None:
    make, shape = NETWORK_SAMPLES[target]
    torch.manual_seed(5)
    network = make().eval()
    names = tuple(n for n, _ in network.named_parameters())
    model = TangentModel(network, names, path="dual")  # refuses an op without a rule
    assert _reaches(network, target), f"the sample network does not call {_label(target)}"
    generator = torch.Generator().manual_seed(13)
    x = SPREAD * torch.randn(shape, generator=generator)
    delta = {n: torch.randn(s, generator=generator) for n, s in model.delta_shapes().items()}
    expected_y, expected_t = jvp_forward_dual(network, delta, x)
    with torch.no_grad():  # the stacked forms
        y, ty = model.forward_dual(x, delta)
    _close(y, expected_y)
    _close(ty, expected_t)
    leaves = {n: d.clone().requires_grad_(True) for n, d in delta.items()}
    y, ty = model.forward_dual(x, leaves)  # the pair forms, which autograd differentiates
    _close(y.detach(), expected_y)
    assert ty is not None
    assert ty.requires_grad
    _close(ty.detach(), expected_t)
