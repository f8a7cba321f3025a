"""The project's own pre-trained bases: a network trained on the public split of a dataset.

Federated learning needs a shared θ0. For the built-in ``digits`` data there are no
published weights, so the project pre-trains ``small-cnn`` on a public split (20 % of the
train set by default) that no silo holds. Training is seeded; the server computes it once,
caches it by the spec's hash, and silos receive θ0 from the server with its sha256 rather
than recomputing it (floating-point results may differ between machines).
"""

from __future__ import annotations

from torch import nn

from tmc.common.data import Shard, load_dataset, public_private_split
from tmc.common.models.spec import BaseModelSpec, PretrainedWeights
from tmc.common.models.zoo import build_network
from tmc.common.threads import torch_threads
from tmc.common.training import TrainConfig, fit


def pretrain_network(
    spec: BaseModelSpec, weights: PretrainedWeights, *, progress: bool = False
) -> nn.Module:
    """Train every parameter of a freshly initialised network on the public split (cross-
    entropy, batch statistics on, AdamW, ×0.1 at 50 % and 80 % of the epochs)."""
    train_set = load_dataset(weights.dataset, train=True)
    public, _ = public_private_split(
        train_set.targets,
        fraction=weights.public_fraction,
        seed=weights.split_seed,
        classes=weights.public_classes,
    )
    network = build_network(spec, seed=weights.seed)
    config = TrainConfig(
        epochs=weights.epochs,
        batch_size=weights.batch_size,
        lr=weights.lr,
        loss="ce",
        penalty=0.0,
        seed=weights.seed,
        device="cpu",  # the reference θ0 is computed on the CPU, for reproducibility
    )
    params = list(network.parameters())
    # One thread: CPU reductions split across threads round differently, and θ0 must be
    # the same bytes whatever the machine's core count (measured: 1 vs 2 threads differ).
    with torch_threads(1):
        fit(
            network,
            params,
            Shard(train_set, public),
            config,
            penalty=lambda: params[0].new_zeros(()),
            batchnorm_train=True,
            progress=progress,
            description="pre-training the base",
        )
    return network.eval()
