"""VGG with batch normalisation (Simonyan & Zisserman, 2015; Ioffe & Szegedy, 2015): stages of
3x3 conv-BN-ReLU closed by 2x2 max pooling, which stops at 1x1 maps. From 224 px the paper's
7x7-pooled 4096-4096 head; below, global average pooling and a linear classifier (as on CIFAR)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.layers.blocks import ClassifierHead, ConvNormAct
from cnnlab.models.base import ClassifierModel, init_conv_weights
from cnnlab.models.registry import register_variants

PAPER_HEAD_MIN_SIZE = 224


@dataclass(frozen=True)
class VGGVariant:
    description: str
    stages: tuple[tuple[int, ...], ...]  # output bands of each 3x3 conv, per stage


VGGS: dict[str, VGGVariant] = {
    "vgg11-bn": VGGVariant(
        "VGG-11 with BN: 8 conv layers in 5 stages (64-512 bands)",
        ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    ),
    "vgg16-bn": VGGVariant(
        "VGG-16 with BN: 13 conv layers in 5 stages (64-512 bands)",
        ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    ),
}


class VGG(ClassifierModel):
    def __init__(
        self,
        variant: VGGVariant,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        size, channels = min(image_size), in_channels
        for index, widths in enumerate(variant.stages, start=1):
            stage = nn.Sequential()
            for number, width in enumerate(widths, start=1):
                # The paper's convolutions keep their bias; BN is added after them.
                stage.add_module(f"conv{number}", ConvNormAct(channels, width, 3, bias=True))
                channels = width
            if size >= 2:
                stage.add_module("pool", nn.MaxPool2d(2))
                size //= 2
            self.features.add_module(f"stage{index}", stage)
        self.feature_layers = tuple(f"features.stage{i}" for i in range(1, len(variant.stages) + 1))
        if min(image_size) >= PAPER_HEAD_MIN_SIZE:
            self.head = ClassifierHead(
                channels * 7 * 7, num_classes, pool_size=7, hidden_units=(4096, 4096),
                dropout=dropout,
            )  # fmt: skip
        else:
            self.head = ClassifierHead(channels, num_classes, dropout=dropout)
        init_conv_weights(self)


register_variants(VGGS, VGG, dropout=0.5)
