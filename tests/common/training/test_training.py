"""Local training: the losses, a component that learns its shard, determinism, the
non-linear baseline, evaluation and the output ensemble."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from tmc.common.data import DatasetSpec, FederatedPartition, PartitionSpec
from tmc.common.errors import ConfigError, DataError
from tmc.common.models import MaterializedBase
from tmc.common.tangent import TangentModel
from tmc.common.training import (
    OutputEnsemble,
    TrainConfig,
    distance_penalty,
    evaluate,
    finetune,
    rescaled_square_loss,
    score_logits,
    train_tangent,
)


@pytest.fixture(scope="module")
def partition() -> FederatedPartition:
    return FederatedPartition(
        DatasetSpec(name="digits"), PartitionSpec(split="class", num_silos=5, seed=0)
    )


def test_rescaled_square_loss_by_hand() -> None:
    logits = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    labels = torch.tensor([1, 0])
    # targets [[0, 3], [3, 0]]: squared errors 1, 1, 9, 0 → mean 11/4
    assert float(rescaled_square_loss(logits, labels, kappa=3.0)) == pytest.approx(11 / 4)


def test_distance_penalty() -> None:
    a = torch.tensor([3.0, 0.0])
    b = torch.tensor([0.0, 4.0])
    assert float(distance_penalty([a, b], eps=0.0)) == pytest.approx(5.0)
    assert float(distance_penalty([a], [a], eps=1e-6)) == pytest.approx(1e-3)


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="milestones"):
        TrainConfig(milestones=(0.8, 0.5))
    with pytest.raises(ValidationError, match="lr"):
        TrainConfig(lr=-1)
    with pytest.raises(ValidationError, match="device"):
        TrainConfig(device="tpu")
    assert TrainConfig(epochs=50).milestone_epochs() == [25, 40]


def test_component_learns_its_shard_deterministically(
    digits_base: MaterializedBase, partition: FederatedPartition
) -> None:
    model = TangentModel(digits_base.network, digits_base.tangent_names)
    shard = partition.silo_shard(0)
    config = TrainConfig(epochs=8)
    before = {k: v.clone() for k, v in digits_base.network.state_dict().items()}
    delta, report = train_tangent(model, shard, config)
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    assert report.num_examples == len(shard)
    assert sorted(report.label_histogram) == sorted(set(shard.targets.tolist()))
    assert delta.norm() > 0
    for key, value in digits_base.network.state_dict().items():
        assert torch.equal(value, before[key]), f"θ0 changed: {key}"
    again, _ = train_tangent(model, shard, config)
    assert again.equal(delta)
    model.load_delta(delta)
    accuracy = evaluate(model, shard).accuracy
    assert accuracy > 0.95


def test_nonlinear_baseline_trains_only_the_named_parameters(
    digits_base: MaterializedBase, partition: FederatedPartition
) -> None:
    names = digits_base.tangent_names
    tuned, report = finetune(
        digits_base.network, names, partition.silo_shard(1), TrainConfig(epochs=3)
    )
    original = dict(digits_base.network.named_parameters())
    for name, param in tuned.named_parameters():
        assert torch.equal(param, original[name]) == (name not in names), name
    assert report.final_loss < report.epoch_losses[0] or report.epochs == 1


def test_empty_shard_is_refused(
    digits_base: MaterializedBase, partition: FederatedPartition
) -> None:
    from tmc.common.data import Shard

    model = TangentModel(digits_base.network, digits_base.tangent_names)
    with pytest.raises(DataError, match="empty"):
        train_tangent(model, Shard(partition.train_set, []), TrainConfig(epochs=1))


def test_scores_per_class_and_per_task() -> None:
    logits = torch.tensor(
        [[5.0, 0.0, 0.0, 9.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0]]
    )
    labels = torch.tensor([0, 1, 2, 3])
    scores = score_logits(logits, labels, tasks=[(0, 1), (2, 3)])
    assert scores.accuracy == 0.5
    assert scores.per_class == {0: 0.0, 1: 1.0, 2: 0.0, 3: 1.0}
    assert scores.task_accuracy == 0.75  # sample 0 is right once restricted to task (0, 1)
    with pytest.raises(ConfigError, match="disjoint"):
        score_logits(logits, labels, tasks=[(0, 1), (1, 2, 3)])


def test_output_ensemble_modes() -> None:
    a, b = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    x = torch.randn(5, 3)
    logit = OutputEnsemble([a, b], mode="logit")(x)
    torch.testing.assert_close(logit, (a(x) + b(x)) / 2)
    soft = OutputEnsemble([a, b], mode="softmax")(x).exp()
    torch.testing.assert_close(soft, (a(x).softmax(-1) + b(x).softmax(-1)) / 2)
    with pytest.raises(ConfigError):
        OutputEnsemble([], mode="logit")
