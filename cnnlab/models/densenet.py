"""DenseNet-BC (Huang et al., 2017): dense blocks of BN-ReLU-1x1-BN-ReLU-3x3 layers that see all
earlier maps, joined by transitions (compression 0.5, 2x2 average pooling while the maps allow).
CIFAR rows: a 3x3 stem of 2k bands; DenseNet-121: the 7x7/2 stem and max pool from 64 px."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.layers.blocks import ClassifierHead, ConvNormAct, DenseBlock, Transition
from cnnlab.models.base import (
    ClassifierModel,
    init_conv_weights,
    spatial_size_after,
    uses_imagenet_stem,
)
from cnnlab.models.registry import register_variants


@dataclass(frozen=True)
class DenseNetVariant:
    description: str
    growth_rate: int
    block_layers: tuple[int, ...]
    stem_width: int
    imagenet: bool
    compression: float = 0.5


DENSENETS: dict[str, DenseNetVariant] = {
    "densenet-bc-40": DenseNetVariant(
        "DenseNet-BC-40 (CIFAR, k=12): 3 dense blocks of 6 layers", 12, (6, 6, 6), 24, False
    ),
    "densenet-bc-100": DenseNetVariant(
        "DenseNet-BC-100 (CIFAR, k=12): 3 dense blocks of 16 layers", 12, (16, 16, 16), 24, False
    ),
    "densenet121": DenseNetVariant(
        "DenseNet-121 (k=32): dense blocks of 6-12-24-16 layers (3x3 stem below 64 px)",
        32,
        (6, 12, 24, 16),
        64,
        True,
    ),  # fmt: skip
}


class DenseNet(ClassifierModel):
    def __init__(
        self,
        variant: DenseNetVariant,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float,
    ) -> None:
        super().__init__()
        size, channels = min(image_size), variant.stem_width
        self.features = nn.Sequential()
        if variant.imagenet and uses_imagenet_stem(image_size):
            stem = nn.Sequential(
                ConvNormAct(in_channels, channels, 7, stride=2), nn.MaxPool2d(3, 2, 1)
            )
            size = spatial_size_after(spatial_size_after(size, 7, 2, 3), 3, 2, 1)
        elif variant.imagenet:
            stem = ConvNormAct(in_channels, channels, 3)
        else:
            stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.features.add_module("stem", stem)
        names = []
        for index, num_layers in enumerate(variant.block_layers, start=1):
            block = DenseBlock(channels, num_layers, variant.growth_rate)
            self.features.add_module(f"block{index}", block)
            channels = block.out_channels
            names.append(f"features.block{index}")
            if index < len(variant.block_layers):
                reduced = int(channels * variant.compression)
                transition = Transition(channels, reduced, downsample=size >= 2)
                self.features.add_module(f"transition{index}", transition)
                channels, size = reduced, size // 2 if size >= 2 else size
        self.features.add_module("norm", nn.BatchNorm2d(channels))
        self.features.add_module("act", nn.ReLU())
        self.feature_layers = (*names[:-1], "features.act")
        self.head = ClassifierHead(channels, num_classes, dropout=dropout)
        init_conv_weights(self)


register_variants(DENSENETS, DenseNet, dropout=0.0)
