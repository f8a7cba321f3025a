"""DP-SGD: per-example gradients, clipping, noise, the accountant, refusals, training."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import randomize_batchnorm
from tmc.common.data import DatasetSpec, FederatedPartition, PartitionSpec
from tmc.common.errors import ConfigError
from tmc.common.models import BaseModelSpec, MaterializedBase, materialize
from tmc.common.tangent import TangentModel
from tmc.common.training import PrivacyConfig, TrainConfig, task_loss, train_tangent
from tmc.common.training.accounting import epsilon, noise_for_epsilon, plan_privacy
from tmc.common.training.privacy import add_noise, clipped_sum, per_example_gradients


@pytest.fixture(scope="module")
def init_base() -> MaterializedBase:
    base = materialize(
        BaseModelSpec(
            architecture="small-cnn",
            num_classes=10,
            in_channels=1,
            weights={"kind": "init", "seed": 3},
        )
    )
    randomize_batchnorm(base.network, seed=1)
    return base


@pytest.fixture(scope="module")
def shard() -> torch.utils.data.Dataset[tuple[torch.Tensor, int]]:
    partition = FederatedPartition(
        DatasetSpec(name="digits"), PartitionSpec(split="iid", num_silos=5, seed=0)
    )
    return partition.silo_shard(0)


def _single_example_grads(
    model: TangentModel, x: torch.Tensor, y: torch.Tensor, delta: dict[str, torch.Tensor]
) -> list[dict[str, torch.Tensor]]:
    """The reference: autograd on each example's own loss, one at a time."""
    config = TrainConfig()
    out = []
    for i in range(len(y)):
        leaves = {n: t.clone().requires_grad_(True) for n, t in delta.items()}
        loss = task_loss(model(x[i : i + 1], leaves), y[i : i + 1], config)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        out.append(dict(zip(leaves, grads, strict=True)))
    return out


@pytest.mark.parametrize(
    ("path", "features"), [("dual", True), ("dual", False), ("jvp", True), ("jvp", False)]
)
def test_per_example_gradients_equal_single_example_loss_gradients(
    init_base: MaterializedBase, path: str, features: bool
) -> None:
    model = TangentModel(init_base.network, init_base.tangent_names, path=path)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (6,), generator=generator)
    delta = {n: 0.05 * torch.randn(s, generator=generator) for n, s in model.delta_shapes().items()}
    model.load_delta(delta)
    inputs = model.frozen_features(x) if features else x
    assert inputs is not None
    lin = model.linearised(features=features)
    with torch.no_grad():
        logits = lin.logits(inputs, model.delta_state())
    logits.requires_grad_(True)
    (output_grads,) = torch.autograd.grad(task_loss(logits, y, TrainConfig()) * len(y), logits)
    batched = per_example_gradients(lin, inputs, output_grads)
    for i, expected in enumerate(_single_example_grads(model, x, y, delta)):
        for name, value in expected.items():
            torch.testing.assert_close(batched[name][i], value, atol=1e-5, rtol=1e-4)


def test_dp_training_is_the_same_on_both_paths(
    init_base: MaterializedBase, shard: torch.utils.data.Dataset[tuple[torch.Tensor, int]]
) -> None:
    """Same sampling and noise: the two backends take the same steps, up to rounding (the
    loss is evaluated at the current Δ on both, not at the point the gradient is taken)."""
    privacy = PrivacyConfig(noise_multiplier=1.0, noise_seed=5)
    config = TrainConfig(epochs=1, lr=1e-3, batch_size=16, seed=0, device="cpu", privacy=privacy)
    runs = {
        path: train_tangent(
            TangentModel(init_base.network, init_base.tangent_names, path=path), shard, config
        )
        for path in ("dual", "jvp")
    }
    (dual, dual_report), (generic, generic_report) = runs["dual"], runs["jvp"]
    assert generic_report.epoch_losses == pytest.approx(dual_report.epoch_losses, rel=1e-4)
    for name, value in dual.items():
        torch.testing.assert_close(generic[name], value, atol=1e-4, rtol=1e-3)


def test_clipping_bounds_each_contribution() -> None:
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([1e-3, 0.5, 1.0, 3.0, 100.0])
    grads = {
        "w": torch.randn(5, 4, 3, generator=generator) * scales.view(-1, 1, 1),
        "b": torch.randn(5, 4, generator=generator) * scales.view(-1, 1),
    }
    clip = 0.7
    bound = clip * (1 + 1e-6)  # float32 rounding of the norm and of the scaling
    for i in range(5):  # each example alone: its clipped contribution has norm ≤ C
        alone = {n: g[i : i + 1] for n, g in grads.items()}
        summed, norms = clipped_sum(alone, clip)
        norm = math.sqrt(sum(float(t.pow(2).sum()) for t in summed.values()))
        assert norm <= bound
        if float(norms[0]) <= clip:  # below the bound: unchanged
            torch.testing.assert_close(summed["w"], alone["w"][0])
        else:  # above: scaled onto the bound
            assert norm == pytest.approx(clip, rel=1e-5)
    summed, _ = clipped_sum(grads, clip)
    assert math.sqrt(sum(float(t.pow(2).sum()) for t in summed.values())) <= 5 * bound


def test_noise_has_std_sigma_times_clip() -> None:
    generator = torch.Generator().manual_seed(1234)
    zeros = {"a": torch.zeros(400, 250), "b": torch.zeros(100_000)}
    noisy = add_noise(zeros, noise_multiplier=2.0, clip=0.5, generator=generator)
    values = torch.cat([t.flatten() for t in noisy.values()])
    # 200,000 draws: the sample std is within 1 % of σ·C = 1 (its own std is 0.16 %)
    assert float(values.std()) == pytest.approx(1.0, rel=0.01)
    assert abs(float(values.mean())) < 0.01
    again = add_noise(zeros, noise_multiplier=2.0, clip=0.5, generator=generator)
    assert not torch.equal(again["a"], noisy["a"])  # fresh noise each step


def test_accountant_matches_the_library_documented_value() -> None:
    # dp-accounting's rdp_privacy_accountant_test: σ = 4.530877117 with q = 1, one step, is
    # "exactly (1, 1e-6)-DP" (RDP of the Gaussian, converted at δ = 1e-6).
    assert epsilon(4.530877117, 1.0, 1, 1e-6) == pytest.approx(1.0, abs=1e-4)
    # more noise, fewer steps or a smaller q: less privacy loss
    base = epsilon(1.1, 0.01, 1000, 1e-5)
    assert epsilon(1.5, 0.01, 1000, 1e-5) < base
    assert epsilon(1.1, 0.01, 500, 1e-5) < base
    assert epsilon(1.1, 0.005, 1000, 1e-5) < base


def test_noise_for_a_target_epsilon_reaches_it() -> None:
    sigma = noise_for_epsilon(3.0, 0.1, 100, 1e-5)
    reached = epsilon(sigma, 0.1, 100, 1e-5)
    assert 2.99 <= reached <= 3.0
    assert epsilon(sigma - 1e-2, 0.1, 100, 1e-5) > 3.0  # the smallest such σ, to tolerance


def test_an_unreachable_target_is_refused_with_what_to_change() -> None:
    privacy = PrivacyConfig(target_epsilon=0.01)
    with pytest.raises(ConfigError, match=r"out of reach.*raise dp-epsilon") as refused:
        plan_privacy(privacy, num_examples=400, batch_size=200, epochs=500)
    assert "400 examples" in str(refused.value)
    with pytest.raises(ConfigError, match="lower batch-size"):
        plan_privacy(privacy, num_examples=30, batch_size=32, epochs=1)
    with pytest.raises(ConfigError, match="not below 1/N"):
        plan_privacy(
            PrivacyConfig(target_epsilon=3, delta=0.01), num_examples=200, batch_size=8, epochs=1
        )
    with pytest.raises(ConfigError, match="raise the noise multiplier"):
        plan_privacy(
            PrivacyConfig(target_epsilon=1.0, noise_multiplier=0.5),
            num_examples=200,
            batch_size=20,
            epochs=5,
        )
    with pytest.raises(ValueError, match="target epsilon or a noise multiplier"):
        PrivacyConfig()


def test_dp_training_records_its_accounting_and_learns(
    digits_base: MaterializedBase, shard: torch.utils.data.Dataset[tuple[torch.Tensor, int]]
) -> None:
    small = torch.utils.data.Subset(shard, range(96))
    model = TangentModel(digits_base.network, digits_base.tangent_names)
    privacy = PrivacyConfig(noise_multiplier=1.0, noise_seed=7)
    config = TrainConfig(epochs=2, batch_size=16, device="cpu", privacy=privacy)
    delta, report = train_tangent(model, small, config)
    assert report.privacy is not None
    assert report.cached_features
    assert report.privacy.sampling_rate == pytest.approx(16 / 96)
    assert report.privacy.steps == 2 * 6
    assert report.privacy.noise_multiplier == 1.0
    assert report.privacy.epsilon == pytest.approx(epsilon(1.0, 16 / 96, 12, 1e-5))
    assert report.privacy.delta == 1e-5
    assert report.privacy.accountant == "dp-accounting RDP"
    assert delta.is_finite()
    assert delta.norm() > 0
    assert all(math.isfinite(loss) for loss in report.epoch_losses)
    # the same noise seed gives the same Δ; uncached training computes the same gradients
    again, _ = train_tangent(model, small, config)
    assert again.equal(delta)
    uncached, _ = train_tangent(model, small, config.model_copy(update={"cache_features": False}))
    for name, value in delta.items():
        torch.testing.assert_close(uncached[name], value, atol=1e-4, rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dp_training_on_cuda(
    digits_base: MaterializedBase, shard: torch.utils.data.Dataset[tuple[torch.Tensor, int]]
) -> None:
    model = TangentModel(digits_base.network, digits_base.tangent_names)
    config = TrainConfig(
        epochs=2, device="cuda", privacy=PrivacyConfig(target_epsilon=3.0, noise_seed=1)
    )
    delta, report = train_tangent(model, shard, config)
    cpu, _ = train_tangent(model, shard, config.model_copy(update={"device": "cpu"}))
    assert cpu.is_finite()  # other generators: another draw of the noise, not the same Δ
    assert report.device.startswith("cuda")
    assert report.privacy is not None
    assert report.privacy.epsilon <= 3.0
    assert delta.is_finite()
    assert delta.norm() > 0
