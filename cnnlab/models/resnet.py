"""ResNet (He et al., 2016): CIFAR ResNet-20/56 (16-32-64 bands), ImageNet ResNet-18/50 (basic or
bottleneck blocks) and SE-ResNet rows (Hu et al., 2018). Shortcuts that change shape are 1x1
projections (option B) or, with shortcut="zero-pad", the CIFAR paper's parameter-free option A."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.layers.blocks import BasicResidual, BottleneckResidual, ClassifierHead, ConvNormAct
from cnnlab.models.base import ClassifierModel, init_conv_weights, uses_imagenet_stem
from cnnlab.models.registry import register_model


@dataclass(frozen=True)
class ResNetVariant:
    description: str
    block: str  # "basic" or "bottleneck"
    depths: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # output bands per stage
    stem_width: int
    imagenet: bool  # ImageNet family: 7x7/2 stem + max pool on images of 64 px and more
    se_reduction: int | None = None


RESNETS: dict[str, ResNetVariant] = {
    "resnet20": ResNetVariant(
        "ResNet-20 (CIFAR): 3 stages x 3 basic blocks, 16-32-64 bands", "basic",
        (3, 3, 3), (16, 32, 64), 16, imagenet=False,
    ),
    "resnet56": ResNetVariant(
        "ResNet-56 (CIFAR): 3 stages x 9 basic blocks, 16-32-64 bands", "basic",
        (9, 9, 9), (16, 32, 64), 16, imagenet=False,
    ),
    "resnet18": ResNetVariant(
        "ResNet-18: 4 stages x 2 basic blocks, 64-512 bands (3x3 stem below 64 px)", "basic",
        (2, 2, 2, 2), (64, 128, 256, 512), 64, imagenet=True,
    ),
    "resnet50": ResNetVariant(
        "ResNet-50: 4 stages of 3-4-6-3 bottleneck blocks, 256-2048 bands", "bottleneck",
        (3, 4, 6, 3), (256, 512, 1024, 2048), 64, imagenet=True,
    ),
    "se-resnet20": ResNetVariant(
        "SE-ResNet-20: ResNet-20 with squeeze-excitation (reduction 16) in every block", "basic",
        (3, 3, 3), (16, 32, 64), 16, imagenet=False, se_reduction=16,
    ),
    "se-resnet18": ResNetVariant(
        "SE-ResNet-18: ResNet-18 with squeeze-excitation (reduction 16) in every block", "basic",
        (2, 2, 2, 2), (64, 128, 256, 512), 64, imagenet=True, se_reduction=16,
    ),
}  # fmt: skip


class ResNet(ClassifierModel):
    def __init__(
        self,
        variant: ResNetVariant,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float,
        shortcut: str,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        if variant.imagenet and uses_imagenet_stem(image_size):
            stem = nn.Sequential(
                ConvNormAct(in_channels, variant.stem_width, 7, stride=2), nn.MaxPool2d(3, 2, 1)
            )
        else:
            stem = ConvNormAct(in_channels, variant.stem_width, 3)
        self.features.add_module("stem", stem)
        block = BasicResidual if variant.block == "basic" else BottleneckResidual
        channels = variant.stem_width
        for index, (depth, width) in enumerate(zip(variant.depths, variant.widths, strict=True)):
            stage = nn.Sequential()
            for number in range(depth):
                stride = 2 if index > 0 and number == 0 else 1
                stage.add_module(
                    f"block{number + 1}",
                    block(
                        channels,
                        width,
                        stride,
                        se_reduction=variant.se_reduction,
                        shortcut=shortcut,
                    ),
                )
                channels = width
            self.features.add_module(f"stage{index + 1}", stage)
        self.feature_layers = tuple(f"features.stage{i + 1}" for i in range(len(variant.depths)))
        self.head = ClassifierHead(channels, num_classes, dropout=dropout)
        init_conv_weights(self)


def _register(name: str, variant: ResNetVariant) -> None:
    @register_model(name, variant.description)
    def build(
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float = 0.0,
        shortcut: str = "projection",
    ) -> ResNet:
        return ResNet(variant, in_channels, num_classes, image_size, dropout, shortcut)

    build.__name__ = build.__qualname__ = name.replace("-", "_")
    build.__doc__ = variant.description


for _name, _variant in RESNETS.items():
    _register(_name, _variant)
