"""Xception-style networks (Chollet, 2017): depthwise-separable convolutions in residual blocks; an
entry flow that halves the maps (3x3/2 max pooling, 1x1/2 projections), a middle flow of identity
blocks, an exit flow and global average pooling. Below 64 px the stem keeps stride 1."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.layers.blocks import ClassifierHead, ConvNormAct, SeparableConv2d
from cnnlab.models.base import ClassifierModel, init_conv_weights, uses_imagenet_stem
from cnnlab.models.registry import register_variants


@dataclass(frozen=True)
class XceptionVariant:
    description: str
    stem_widths: tuple[int, int]
    entry_widths: tuple[int, ...]  # one downsampling block each
    middle_blocks: int
    exit_widths: tuple[int, int]  # the exit block's two separable convs
    final_widths: tuple[int, int]  # the two separable conv-BN-ReLU layers before pooling


XCEPTIONS: dict[str, XceptionVariant] = {
    "xception": XceptionVariant(
        "Xception: entry 128-256-728, 8 middle blocks of 728, exit 1024-1536-2048 bands",
        (32, 64), (128, 256, 728), 8, (728, 1024), (1536, 2048),
    ),
    "xception-small": XceptionVariant(
        "Xception-style, narrow: entry 64-128-256, 4 middle blocks of 256, exit 384-512-768",
        (32, 32), (64, 128, 256), 4, (256, 384), (512, 768),
    ),
}  # fmt: skip


class XceptionBlock(nn.Module):
    """[ReLU -> separable -> BN] per width, then max pooling if strided; plus the shortcut."""

    def __init__(
        self, in_channels: int, widths: tuple[int, ...], stride: int, relu_first: bool = True
    ) -> None:
        super().__init__()
        self.branch = nn.Sequential()
        channels = in_channels
        for index, width in enumerate(widths, start=1):
            if index > 1 or relu_first:
                self.branch.add_module(f"act{index}", nn.ReLU())
            self.branch.add_module(f"sep{index}", SeparableConv2d(channels, width))
            self.branch.add_module(f"norm{index}", nn.BatchNorm2d(width))
            channels = width
        if stride > 1:
            self.branch.add_module("pool", nn.MaxPool2d(3, stride, 1))
        self.shortcut = None
        if stride > 1 or channels != in_channels:
            self.shortcut = ConvNormAct(in_channels, channels, 1, stride, activation=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + (x if self.shortcut is None else self.shortcut(x))


class Xception(ClassifierModel):
    def __init__(
        self,
        variant: XceptionVariant,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float,
    ) -> None:
        super().__init__()
        first_stride = 2 if uses_imagenet_stem(image_size) else 1
        stem = nn.Sequential(
            ConvNormAct(in_channels, variant.stem_widths[0], 3, first_stride),
            ConvNormAct(variant.stem_widths[0], variant.stem_widths[1], 3),
        )
        entry = nn.Sequential()
        channels = variant.stem_widths[1]
        for index, width in enumerate(variant.entry_widths, start=1):
            entry.add_module(
                f"block{index}", XceptionBlock(channels, (width, width), 2, relu_first=index > 1)
            )
            channels = width
        middle = nn.Sequential()
        for index in range(1, variant.middle_blocks + 1):
            middle.add_module(f"block{index}", XceptionBlock(channels, (channels,) * 3, 1))
        exit_flow = nn.Sequential()
        exit_flow.add_module("block", XceptionBlock(channels, variant.exit_widths, 2))
        channels = variant.exit_widths[-1]
        for index, width in enumerate(variant.final_widths, start=1):
            exit_flow.add_module(
                f"sep{index}",
                nn.Sequential(SeparableConv2d(channels, width), nn.BatchNorm2d(width), nn.ReLU()),
            )
            channels = width
        self.features = nn.Sequential()
        for name, module in (
            ("stem", stem),
            ("entry", entry),
            ("middle", middle),
            ("exit", exit_flow),
        ):
            self.features.add_module(name, module)
        self.feature_layers = ("features.entry", "features.middle", "features.exit")
        self.head = ClassifierHead(channels, num_classes, dropout=dropout)
        init_conv_weights(self)


register_variants(XCEPTIONS, Xception, dropout=0.0)
