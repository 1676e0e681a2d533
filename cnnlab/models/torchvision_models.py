"""torchvision's ImageNet networks (ResNet, VGG, MobileNetV2, EfficientNet, DenseNet) under the
cnnlab contract for transfer learning: any bands (the first conv is rebuilt), any classes. Built
with weights=None, untrained; `--pretrained` loads torchvision's ImageNet weights afterwards
(cnnlab/transfer/backbones.py), so model.json rebuilds them without a download."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.models.base import ClassifierModel
from cnnlab.models.registry import register_model

log = logging.getLogger(__name__)

UNTRAINED_NOTE = "untrained; ImageNet weights with --pretrained, where online"
# Steps of forward_features/forward_head are dotted module names of the torchvision network or one
# of these functional steps (what torchvision's own forward does between its modules).
FUNCTIONAL_STEPS = {
    "relu": torch.relu,
    "global_avg_pool": lambda x: nn.functional.adaptive_avg_pool2d(x, 1),
    "flatten": lambda x: torch.flatten(x, 1),
}


@dataclass(frozen=True)
class TorchvisionRow:
    description: str
    builder: str  # function in torchvision.models
    stem: str  # the first convolution, rebuilt for other band counts
    features: tuple[str, ...]  # steps of forward_features
    head: tuple[str, ...]  # steps of forward_head; "dropout" is cnnlab's own, before the fc
    classifier: str  # the last nn.Linear
    feature_layers: tuple[str, ...]  # stage outputs, shallow to deep
    dropouts: tuple[str, ...] = ()  # torchvision's own dropout layers in the head
    min_image_size: int = 8


_RESNET = dict(
    stem="conv1",
    features=("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
    head=("avgpool", "flatten", "dropout", "fc"),
    classifier="fc",
    feature_layers=("layer1", "layer2", "layer3", "layer4"),
)
_VGG_HEAD = dict(
    head=("avgpool", "flatten", "classifier"),
    classifier="classifier.6",
    dropouts=("classifier.2", "classifier.5"),
    min_image_size=32,
)
_MOBILE_HEAD = dict(classifier="classifier.1", dropouts=("classifier.0",))

TORCHVISION_MODELS: dict[str, TorchvisionRow] = {
    "tv-resnet18": TorchvisionRow("torchvision ResNet-18", "resnet18", **_RESNET),
    "tv-resnet50": TorchvisionRow("torchvision ResNet-50", "resnet50", **_RESNET),
    "tv-vgg16": TorchvisionRow(
        "torchvision VGG-16", "vgg16", stem="features.0", features=("features",),
        feature_layers=tuple(f"features.{i}" for i in (4, 9, 16, 23, 30)), **_VGG_HEAD,
    ),
    "tv-vgg16-bn": TorchvisionRow(
        "torchvision VGG-16 with BN", "vgg16_bn", stem="features.0", features=("features",),
        feature_layers=tuple(f"features.{i}" for i in (6, 13, 23, 33, 43)), **_VGG_HEAD,
    ),
    "tv-mobilenet-v2": TorchvisionRow(
        "torchvision MobileNetV2", "mobilenet_v2", stem="features.0.0", features=("features",),
        head=("global_avg_pool", "flatten", "classifier"),
        feature_layers=tuple(f"features.{i}" for i in (1, 3, 6, 13, 18)), **_MOBILE_HEAD,
    ),
    "tv-efficientnet-b0": TorchvisionRow(
        "torchvision EfficientNet-B0", "efficientnet_b0", stem="features.0.0",
        features=("features",), head=("avgpool", "flatten", "classifier"),
        feature_layers=tuple(f"features.{i}" for i in (1, 2, 3, 5, 8)), **_MOBILE_HEAD,
    ),
    "tv-densenet121": TorchvisionRow(
        "torchvision DenseNet-121", "densenet121", stem="features.conv0",
        features=("features", "relu"), head=("global_avg_pool", "flatten", "dropout", "classifier"),
        classifier="classifier",
        feature_layers=(
            "features.transition1", "features.transition2", "features.transition3",
            "features.norm5",
        ),
        min_image_size=32,
    ),
}  # fmt: skip


class TorchvisionClassifier(ClassifierModel):
    """A torchvision network kept whole as `net` (so its state_dict keys stay torchvision's)."""

    def __init__(
        self, row: TorchvisionRow, in_channels: int, num_classes: int, dropout: float | None
    ) -> None:
        super().__init__()
        import torchvision  # 2 s on its own (torchvision.ops imports torch._dynamo): on use

        self.net = getattr(torchvision.models, row.builder)(weights=None, num_classes=num_classes)
        self.row = row
        if in_channels != 3:
            old = self.net.get_submodule(row.stem)
            stem = nn.Conv2d(
                in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                bias=old.bias is not None,
            )  # fmt: skip
            nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
            _replace(self.net, row.stem, stem)
        if "dropout" in row.head:
            self.dropout = nn.Dropout(dropout or 0.0)
        elif dropout is not None:
            for name in row.dropouts:
                self.net.get_submodule(name).p = dropout
        self.feature_layers = tuple(f"net.{name}" for name in row.feature_layers)

    def _run(self, steps: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            if step == "dropout":
                x = self.dropout(x)
            elif step in FUNCTIONAL_STEPS:
                x = FUNCTIONAL_STEPS[step](x)
            else:
                x = self.net.get_submodule(step)(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.row.features, x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._run(self.row.head, features)

    @property
    def num_classes(self) -> int:
        return self.net.get_submodule(self.row.classifier).out_features

    def reset_classifier(self, num_classes: int) -> None:
        old = self.net.get_submodule(self.row.classifier)
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        _replace(self.net, self.row.classifier, new.to(old.weight.device))


def _replace(root: nn.Module, dotted_name: str, module: nn.Module) -> None:
    parent, _, name = dotted_name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _register(name: str, row: TorchvisionRow) -> None:
    description = f"{row.description} ({UNTRAINED_NOTE})"

    @register_model(name, description, min_image_size=row.min_image_size)
    def build(
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float | None = None,
    ) -> TorchvisionClassifier:
        log.info("%s: built %s.", name, UNTRAINED_NOTE)
        return TorchvisionClassifier(row, in_channels, num_classes, dropout)

    build.__name__ = build.__qualname__ = name.replace("-", "_")
    build.__doc__ = description


for _name, _row in TORCHVISION_MODELS.items():
    _register(_name, _row)
