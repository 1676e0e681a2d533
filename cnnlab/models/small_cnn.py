"""A small modern CNN: stages of [conv3x3 -> BN -> ReLU] x depth, max-pooled between stages,
global average pooling and a linear classifier. The pattern of the seeds' INPUT -> [[CONV -> RELU]*N
-> POOL?]*M -> FC with batch normalisation, sized for 8-64 px inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import ClassifierModel
from cnnlab.models.registry import register_model


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(ClassifierModel):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        widths: tuple[int, ...],
        depth: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        size = min(image_size)
        channels = in_channels
        for index, width in enumerate(widths):
            stage = nn.Sequential()
            # Pool before every stage but the first, while the maps are still at least 4 px wide.
            if index > 0 and size >= 4:
                stage.add_module("pool", nn.MaxPool2d(2))
                size //= 2
            for block in range(depth):
                stage.add_module(f"conv{block + 1}", conv_bn_relu(channels, width))
                channels = width
            self.features.add_module(f"stage{index + 1}", stage)
        self.feature_layers = tuple(f"features.stage{i + 1}" for i in range(len(widths)))
        self.head = nn.Sequential()
        self.head.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.head.add_module("flatten", nn.Flatten())
        self.head.add_module("dropout", nn.Dropout(dropout))
        self.head.add_module("fc", nn.Linear(channels, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # [B, widths[-1], H', W']


@register_model(
    "small-cnn", "conv-BN-ReLU stages (32-64-128) with max pooling and global average pooling"
)
def small_cnn(
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    widths: tuple[int, ...] = (32, 64, 128),
    depth: int = 2,
    dropout: float = 0.1,
) -> SmallCNN:
    """A small modern CNN: conv-BN-ReLU stages, max pooling between them, GAP and a linear head."""
    return SmallCNN(in_channels, num_classes, image_size, tuple(widths), depth, dropout)
