"""Cutting a network below its trained parameters: prefix then suffix is the network."""

from __future__ import annotations

import torch
import torchvision

from tmc.common.models import efficientnet_lite0
from tmc.common.tangent.split import classify, split_frozen


def test_resnet_split_recomposes_and_keeps_parameter_names() -> None:
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=4).eval()
    trained = [n for n, _ in network.named_parameters() if n.startswith(("layer4.", "fc."))]
    split = split_frozen(network, trained)
    assert split is not None
    assert split.feature_names == ("layer3_1_relu_1",)  # one tensor crosses the cut
    suffix_params = dict(split.suffix.named_parameters())
    assert set(trained) <= suffix_params.keys()
    own = dict(network.named_parameters())
    assert all(suffix_params[n] is own[n] for n in trained)  # shared, not copied
    assert not any(n.startswith(("conv1", "layer1")) for n in suffix_params)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = split.prefix(x)
        assert isinstance(features, tuple)
        torch.testing.assert_close(split.suffix(features), network(x), atol=0, rtol=0)


def test_residual_crossing_the_cut_gives_two_features() -> None:
    network = efficientnet_lite0(num_classes=3, in_channels=1, input_size=32).eval()
    # layer6.1 is a residual block: its skip input and its branch both cross the cut.
    trained = [n for n, _ in network.named_parameters() if n.startswith("layer6.1.project")]
    split = split_frozen(network, trained)
    assert split is not None
    assert len(split.feature_names) == 2
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(split.suffix(split.prefix(x)), network(x), atol=0, rtol=0)


def test_nothing_frozen_means_no_split() -> None:
    network = torchvision.models.resnet18(num_classes=4).eval()
    assert split_frozen(network, [n for n, _ in network.named_parameters()]) is None
    graph = torch.fx.symbolic_trace(network).graph
    trainable, frozen = classify(graph, ["fc.weight"])
    assert "fc" in trainable
    assert "layer4_1_relu_1" in frozen
