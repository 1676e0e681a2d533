"""GoogLeNet-style inception network (Szegedy et al., 2015): a stem, inception modules 3a-3b,
4a-4e and 5a-5b separated by 3x3/2 max pooling, global average pooling and one linear layer
(no auxiliary classifiers; BN in every conv). Below 64 px a 3x3 stem that pools only once."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.layers.blocks import ClassifierHead, ConvNormAct, Inception
from cnnlab.models.base import ClassifierModel, init_conv_weights, uses_imagenet_stem
from cnnlab.models.registry import register_variants

# One module: 1x1 bands, (3x3 reduce, 3x3), (5x5 reduce, 5x5), pool projection (the paper's table).
InceptionWidths = tuple[int, tuple[int, int], tuple[int, int], int]


@dataclass(frozen=True)
class GoogLeNetVariant:
    description: str
    stem_widths: tuple[int, int]  # the 1x1 and 3x3 convs after the first one
    stages: tuple[tuple[InceptionWidths, ...], ...]  # max pooling before every stage but the first
    dropout: float


GOOGLENETS: dict[str, GoogLeNetVariant] = {
    "googlenet": GoogLeNetVariant(
        "GoogLeNet: 9 inception modules (3a-5b) with the paper's widths, GAP, linear head",
        (64, 192),
        (
            (
                (64, (96, 128), (16, 32), 32),
                (128, (128, 192), (32, 96), 64),
            ),
            (
                (192, (96, 208), (16, 48), 64),
                (160, (112, 224), (24, 64), 64),
                (128, (128, 256), (24, 64), 64),
                (112, (144, 288), (32, 64), 64),
                (256, (160, 320), (32, 128), 128),
            ),
            (
                (256, (160, 320), (32, 128), 128),
                (384, (192, 384), (48, 128), 128),
            ),
        ),
        dropout=0.4,
    ),
}


class GoogLeNet(ClassifierModel):
    def __init__(
        self,
        variant: GoogLeNetVariant,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float,
    ) -> None:
        super().__init__()
        reduce_width, stem_width = variant.stem_widths
        stem = nn.Sequential()
        if uses_imagenet_stem(image_size):
            stem.add_module("conv1", ConvNormAct(in_channels, 64, 7, stride=2))
            stem.add_module("pool1", nn.MaxPool2d(3, 2, 1))
        else:
            stem.add_module("conv1", ConvNormAct(in_channels, 64, 3))
        stem.add_module("conv2", ConvNormAct(64, reduce_width, 1))
        stem.add_module("conv3", ConvNormAct(reduce_width, stem_width, 3))
        stem.add_module("pool2", nn.MaxPool2d(3, 2, 1))
        self.features = nn.Sequential()
        self.features.add_module("stem", stem)
        channels = stem_width
        for index, modules in enumerate(variant.stages, start=1):
            stage = nn.Sequential()
            if index > 1:
                stage.add_module("pool", nn.MaxPool2d(3, 2, 1))
            for letter, widths in zip("abcde", modules, strict=False):
                module = Inception(channels, *widths)
                stage.add_module(f"inception{index + 2}{letter}", module)
                channels = module.out_channels
            self.features.add_module(f"stage{index}", stage)
        self.feature_layers = tuple(f"features.stage{i}" for i in range(1, len(variant.stages) + 1))
        self.head = ClassifierHead(channels, num_classes, dropout=dropout)
        init_conv_weights(self)


register_variants(GOOGLENETS, GoogLeNet, dropout=None)
