"""AlexNet (Krizhevsky et al., 2012) with the single-tower widths 64-192-384-256-256 (Krizhevsky,
2014). From 64 px the 11x11/4 stem and 3x3/2 pooling; below, a 5x5/1 stem and padded pooling (the
small-input variant). The 6x6-pooled 4096-4096 head from 224 px; below, 2x2-pooled 1024-1024."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.layers.blocks import ClassifierHead, make_activation
from cnnlab.models.base import ClassifierModel, init_he_fan_in, uses_imagenet_stem
from cnnlab.models.registry import register_variants


@dataclass(frozen=True)
class AlexNetVariant:
    description: str
    widths: tuple[int, int, int, int, int]  # bands of conv1..conv5
    hidden_units: int  # of each of the two dense layers at 224 px and more


ALEXNETS: dict[str, AlexNetVariant] = {
    "alexnet": AlexNetVariant(
        "AlexNet: 5 conv (64-192-384-256-256) + 2 dense; small-input variant below 64 px",
        (64, 192, 384, 256, 256),
        4096,
    ),
}


class AlexNet(ClassifierModel):
    feature_layers = ("features.pool1", "features.pool2", "features.pool5")

    def __init__(
        self,
        variant: AlexNetVariant,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float,
    ) -> None:
        super().__init__()
        large = uses_imagenet_stem(image_size)
        stem = (11, 4, 2) if large else (5, 1, 2)  # kernel, stride, padding
        pool_padding = 0 if large else 1
        kernels = (stem[0], 5, 3, 3, 3)
        self.features = nn.Sequential()
        channels = in_channels
        for index, (width, kernel) in enumerate(zip(variant.widths, kernels, strict=True), 1):
            stride, padding = (stem[1], stem[2]) if index == 1 else (1, kernel // 2)
            self.features.add_module(
                f"conv{index}", nn.Conv2d(channels, width, kernel, stride, padding)
            )
            self.features.add_module(f"relu{index}", make_activation("relu"))
            if index in (1, 2, 5):
                self.features.add_module(f"pool{index}", nn.MaxPool2d(3, 2, pool_padding))
            channels = width
        if min(image_size) >= 224:
            pool_size, hidden = 6, variant.hidden_units
        else:
            pool_size, hidden = 2, 1024
        self.head = ClassifierHead(
            channels * pool_size**2, num_classes, pool_size=pool_size, hidden_units=(hidden,) * 2,
            dropout=dropout,
        )  # fmt: skip
        init_he_fan_in(self)  # no batch norm: torch's default leaves it at chance on digits


register_variants(ALEXNETS, AlexNet, dropout=0.5)
