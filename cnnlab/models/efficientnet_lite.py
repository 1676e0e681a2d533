"""EfficientNet-Lite (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs"; the Lite
variants of the TensorFlow TPU repository drop squeeze-excitation, use ReLU6 and keep the stem and
head widths fixed): inverted-residual MBConv stages, TensorFlow "same" padding on strided layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ClassifierModel
from cnnlab.models.registry import register_model

BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's batch-norm settings, which the weights expect


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int  # of the stage's first block
    expand: int  # expansion ratio of the inverted residual
    out_channels: int


LITE_STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    description: str
    stages: tuple[Stage, ...]
    stem_channels: int = 32
    head_channels: int = 1280
    dropout: float = 0.2


LITE_VARIANTS = {
    "efficientnet-lite0": LiteVariant(
        "EfficientNet-Lite0 (Tan & Le 2019; ImageNet weights with --pretrained)", LITE_STAGES
    ),
    # A narrow, shallow variant of the same blocks: fast tests of fine-tuning and features.
    "efficientnet-lite-tiny": LiteVariant(
        "EfficientNet-Lite, 3 narrow stages (for tests and quick experiments)",
        (Stage(1, 3, 1, 1, 8), Stage(1, 3, 2, 4, 16), Stage(1, 5, 2, 4, 24)),
        stem_channels=8,
        head_channels=64,
        dropout=0.0,
    ),
}


class SameConv(nn.Conv2d):
    """A bias-free convolution padded as TensorFlow's "SAME": for stride 2 the extra row and
    column go after the image (bottom, right), not split evenly as torch's padding does."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last axis first
            stride, kernel = self.stride[0], self.kernel_size[0]
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ConvBN(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:  # fmt: skip
        layers = [
            SameConv(in_ch, out_ch, kernel, stride, groups),
            nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM),
        ]
        super().__init__(*layers, *([nn.ReLU6(inplace=True)] if act else []))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise KxK, linear 1x1 projection (+ identity)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.expand = ConvBN(in_ch, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, out_ch, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite(ClassifierModel):
    """`features`: stem, the MBConv stages, 1x1 head conv; `head`: pooling, dropout, fc.

    `input_size`, when set, resizes every input to that square size first (bilinear), so small
    images reach the pretrained filters at the scale they were trained on.
    """

    def __init__(self, variant: LiteVariant, in_channels: int, num_classes: int,
                 dropout: float, input_size: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.input_size = input_size
        stages, width = [], variant.stem_channels
        for stage in variant.stages:
            blocks = []
            for index in range(stage.repeats):
                stride = stage.stride if index == 0 else 1
                blocks.append(MBConv(width, stage.out_channels, stage.kernel, stride, stage.expand))
                width = stage.out_channels
            stages.append(nn.Sequential(*blocks))
        self.features = nn.Sequential()
        self.features.add_module("stem", ConvBN(in_channels, variant.stem_channels, 3, 2))
        self.features.add_module("stages", nn.Sequential(*stages))
        self.features.add_module("head_conv", ConvBN(width, variant.head_channels, 1))
        self.head = nn.Sequential()
        self.head.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.head.add_module("flatten", nn.Flatten())
        self.head.add_module("dropout", nn.Dropout(dropout))
        self.head.add_module("fc", nn.Linear(variant.head_channels, num_classes))
        last = len(stages) - 1
        self.feature_layers = (
            *(f"features.stages.{i}" for i in range(last) if variant.stages[i + 1].stride > 1),
            f"features.stages.{last}",
            "features.head_conv",
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.uniform_(
                    module.weight, -(module.in_features**-0.5), module.in_features**-0.5
                )
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", antialias=False)
        return self.features(x)


def _register(name: str, variant: LiteVariant) -> None:
    @register_model(name, variant.description, min_image_size=8)
    def build(
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float = variant.dropout,
        input_size: int | None = None,
    ) -> EfficientNetLite:
        return EfficientNetLite(variant, in_channels, num_classes, dropout, input_size)

    build.__name__ = build.__qualname__ = name.replace("-", "_")
    build.__doc__ = variant.description


for _name, _variant in LITE_VARIANTS.items():
    _register(_name, _variant)
