"""Cached features: the frozen part runs once per example, and the trained Δ (and the
fine-tuned baseline) are bit-identical to training without the cache, on both paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tmc.common.data import DatasetSpec, Shard, load_dataset
from tmc.common.models import MaterializedBase
from tmc.common.models.zoo import tangent_parameter_names
from tmc.common.tangent import PathChoice, TangentModel
from tmc.common.training import TrainConfig, finetune, train_tangent
from tmc.common.training.features import encode_dataset


@pytest.fixture(scope="module")
def shard() -> Shard:
    data = load_dataset(DatasetSpec(name="digits"), train=True)
    return Shard(data, np.arange(0, 240, 4))


def _names(base: MaterializedBase, scope: str) -> tuple[str, ...]:
    """The tangent names of another scope of the same θ0 (no second pre-training)."""
    prefixes = base.architecture.tangent_prefixes(scope)  # type: ignore[arg-type]
    return tangent_parameter_names(base.network, prefixes)


def _config(cache: bool) -> TrainConfig:
    return TrainConfig(epochs=2, lr=1e-3, batch_size=16, seed=4, device="cpu", cache_features=cache)


@pytest.mark.parametrize("path", ["dual", "jvp"])
@pytest.mark.parametrize("scope", ["last-stage", "full"])
def test_cached_training_is_bit_identical(
    digits_base: MaterializedBase, shard: Shard, path: PathChoice, scope: str
) -> None:
    names = _names(digits_base, scope)
    model = TangentModel(digits_base.network, names, path=path)
    plain, plain_report = train_tangent(model, shard, _config(False))
    cached, cached_report = train_tangent(model, shard, _config(True))
    assert (plain_report.cached_features, cached_report.cached_features) == (False, True)
    assert 0 < cached_report.encode_seconds <= cached_report.seconds
    assert plain_report.epoch_losses == cached_report.epoch_losses
    for name in names:
        assert torch.equal(plain[name], cached[name]), name
    # The model holds the trained Δ afterwards, as without the cache.
    assert all(torch.equal(model.delta_state()[n], cached[n]) for n in names)


def test_cached_finetuning_is_bit_identical(digits_base: MaterializedBase, shard: Shard) -> None:
    names = digits_base.tangent_names
    plain, _ = finetune(digits_base.network, names, shard, _config(False))
    cached, report = finetune(digits_base.network, names, shard, _config(True))
    assert report.cached_features
    theirs = dict(cached.named_parameters())
    for name, value in plain.named_parameters():
        assert torch.equal(value, theirs[name]), name
    assert any(
        not torch.equal(p, q)
        for p, q in zip(plain.parameters(), digits_base.network.parameters(), strict=True)
    )


def test_features_feed_the_forward_above_the_cut(digits_base: MaterializedBase) -> None:
    for path in ("dual", "jvp"):
        names = _names(digits_base, "last-stage")
        model = TangentModel(digits_base.network, names, path=path)  # type: ignore[arg-type]
        x = torch.rand(5, 1, 8, 8)
        delta = {n: 0.1 * torch.randn(s) for n, s in model.delta_shapes().items()}
        features = model.frozen_features(x)
        assert features is not None
        assert all(f.shape[0] == 5 for f in features)
        with torch.no_grad():
            torch.testing.assert_close(
                model.forward_features(features, delta), model(x, delta), atol=1e-6, rtol=0
            )


def test_nothing_to_cache_when_every_layer_is_tangent(digits_base: MaterializedBase) -> None:
    names = _names(digits_base, "all")
    for path in ("dual", "jvp"):
        model = TangentModel(digits_base.network, names, path=path)  # type: ignore[arg-type]
        assert model.frozen_features(torch.rand(2, 1, 8, 8)) is None


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        if float(h.sum()) > 1e9:  # data-dependent control flow: torch.fx cannot trace it
            h = h * 0
        return self.fc(h)


def test_untraceable_network_trains_uncached() -> None:
    torch.manual_seed(0)
    model = TangentModel(_Untraceable(), ("fc.bias", "fc.weight"))
    assert model.path == "jvp"
    data = TensorDataset(torch.randn(12, 4), torch.arange(12) % 2)
    _, report = train_tangent(model, data, _config(True))  # type: ignore[arg-type]
    assert not report.cached_features


def test_cache_larger_than_its_budget_is_refused(
    digits_base: MaterializedBase, shard: Shard
) -> None:
    model = TangentModel(digits_base.network, digits_base.tangent_names)
    device = torch.device("cpu")
    kept = encode_dataset(model.frozen_features, shard, batch_size=32, device=device)
    assert kept is not None
    assert len(kept) == len(shard)
    assert (kept.targets == shard.targets).all()
    refused = encode_dataset(
        model.frozen_features, shard, batch_size=32, device=device, max_bytes=1024
    )
    assert refused is None


def test_loss_on_present_classes_ignores_the_others() -> None:
    from tmc.common.training import task_loss

    labels = torch.tensor([1, 3])
    logits = torch.tensor([[0.0, 2.0, 9.0, 1.0], [5.0, 0.0, -7.0, 3.0]])
    present = torch.tensor([1, 3])
    square = TrainConfig(kappa=3.0, loss_classes="present")
    # outputs 1 and 3 only: targets [[3, 0], [0, 3]] → errors 1, 1, 0, 0 → mean 2/4
    assert float(task_loss(logits, labels, square, present)) == pytest.approx(0.5)
    moved = logits.clone()
    moved[:, [0, 2]] += 100.0
    assert float(task_loss(moved, labels, square, present)) == pytest.approx(0.5)
    ce = TrainConfig(loss="ce", loss_classes="present")
    expected = torch.nn.functional.cross_entropy(logits[:, [1, 3]], torch.tensor([0, 1]))
    assert float(task_loss(moved, labels, ce, present)) == pytest.approx(float(expected))


def test_training_on_present_classes_leaves_absent_rows_of_the_head_alone(
    digits_base: MaterializedBase, shard: Shard
) -> None:
    model = TangentModel(digits_base.network, digits_base.tangent_names)
    config = _config(True).model_copy(update={"loss_classes": "present"})
    few = Shard(shard, np.flatnonzero(shard.targets < 3))
    delta, report = train_tangent(model, few, config)
    absent = sorted(set(range(10)) - set(report.label_histogram))
    assert absent  # the shard holds some of the digits only
    # The square loss never reads an absent class's output, so its head row gets no
    # gradient; only the distance penalty (which shrinks, from zero: stays zero) acts.
    assert torch.count_nonzero(delta["fc.weight"][absent]) == 0
    assert torch.count_nonzero(delta["fc.weight"][sorted(report.label_histogram)]) > 0
