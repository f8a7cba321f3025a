"""EfficientNet-Lite0: its layout matches the published checkpoint key for key, its padding
is TensorFlow's "SAME", and its packaged weights load only with the recorded sha256."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tmc.common.errors import ConfigError, ModelError
from tmc.common.models import BaseModelSpec, PackagedWeights, efficientnet_lite0, materialize
from tmc.common.models import weights as weights_module
from tmc.common.models.efficientnet_lite import from_published, published_key_map
from tmc.common.models.zoo import EFFICIENTNET_LITE0_IMAGENET, get_architecture


def _installed() -> bool:
    try:
        metadata.distribution(EFFICIENTNET_LITE0_IMAGENET.distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_every_tensor_has_a_published_name() -> None:
    network = efficientnet_lite0(num_classes=1000)
    mapping = published_key_map()
    assert mapping.keys() == network.state_dict().keys()
    assert len(set(mapping.values())) == len(mapping)  # one-to-one
    assert mapping["layer7.1.0.weight"] == "_conv_head.weight"
    assert mapping["layer2.0.depthwise.1.weight"] == "_blocks.1._depthwise_conv.weight"


def test_published_names_load_strictly_and_missing_ones_are_refused() -> None:
    network = efficientnet_lite0(num_classes=1000)
    theirs = {v: network.state_dict()[k] for k, v in published_key_map().items()}
    network.load_state_dict(from_published(theirs), strict=True)
    del theirs["_fc.bias"]
    with pytest.raises(ModelError, match="lacks 1 tensors"):
        from_published(theirs)


def test_stride_two_convs_pad_like_tensorflow_same() -> None:
    network = efficientnet_lite0(num_classes=3, in_channels=3, input_size=32).eval()
    x = torch.randn(1, 3, 32, 32)
    conv = network.stem[1]
    assert isinstance(conv, torch.nn.Conv2d)
    with torch.no_grad():
        ours = network.stem[1](network.stem[0](x))
        # TF "SAME", stride 2, even side: pad 0 before and 1 after.
        expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, None, 2)
    torch.testing.assert_close(ours, expected)
    assert ours.shape[-1] == 16


def test_input_size_is_validated_and_kept_out_of_older_specs_json() -> None:
    with pytest.raises(ConfigError, match="multiple of 32"):
        efficientnet_lite0(num_classes=3, input_size=40)
    assert "input_size" not in BaseModelSpec().canonical_json()
    spec = BaseModelSpec(architecture="small-cnn", input_size=32)
    with pytest.raises(ConfigError, match="does not resize"):
        materialize(spec)
    lite = BaseModelSpec(
        architecture="efficientnet-lite0", in_channels=1, input_size=64, tangent="last-stage"
    )
    base = materialize(lite)
    assert '"input_size":64' in lite.canonical_json()
    assert base.network(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # last-stage = the last inverted residual block, the 1x1 head conv and the classifier
    assert {n.split(".")[0] for n in base.tangent_names} == {"layer7", "fc"}
    assert get_architecture("efficientnet-lite0").resizes_input


def test_packaged_weights_with_another_hash_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "weights.pth"
    torch.save({}, fake)
    monkeypatch.setattr(weights_module, "packaged_path", lambda _: fake)
    spec = BaseModelSpec(architecture="efficientnet-lite0", weights=PackagedWeights())
    with pytest.raises(ModelError, match="sha256"):
        materialize(spec)
    with pytest.raises(ModelError, match="no packaged weights"):
        materialize(spec.model_copy(update={"weights": PackagedWeights(name="other")}))


@pytest.mark.skipif(not _installed(), reason="the 'pretrained' extra is not installed")
def test_packaged_imagenet_weights_load_and_keep_a_fresh_head() -> None:
    spec = BaseModelSpec(
        architecture="efficientnet-lite0",
        num_classes=10,
        in_channels=1,
        input_size=64,
        weights=PackagedWeights(),
        head_seed=3,
    )
    base = materialize(spec)
    state = torch.load(
        weights_module.packaged_path(EFFICIENTNET_LITE0_IMAGENET),
        map_location="cpu",
        weights_only=True,
    )
    torch.testing.assert_close(base.network.stem[1].weight, state["_conv_stem.weight"])
    assert base.network.fc.weight.shape == (10, 1280)  # 1000 ImageNet classes → 10, seeded
    assert materialize(spec).sha256 == base.sha256
