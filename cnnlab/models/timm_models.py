"""timm's ImageNet networks (Wightman, pytorch-image-models) under the cnnlab contract: any bands,
any classes. Built with pretrained=False, so building never downloads; `--pretrained` loads timm's
weights afterwards (cnnlab/transfer/backbones.py). timm is imported only when one is built (it
takes seconds), so `cnnlab models` lists them without it; install it with `cnnlab[timm]`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from cnnlab.errors import ConfigError
from cnnlab.models.base import ClassifierModel
from cnnlab.models.registry import register_model

log = logging.getLogger(__name__)

UNTRAINED_NOTE = "untrained; timm's ImageNet weights with --pretrained, where online"


@dataclass(frozen=True)
class TimmRow:
    """One timm network: its name in timm, and the preprocessing of its default pretrained
    weights as timm's pretrained_cfg gives it (tests/test_timm.py checks them against timm)."""

    description: str
    timm_name: str
    input_size: int = 224
    mean: tuple[float, ...] | None = None  # None: ImageNet's (cnnlab.transfer.weights)
    std: tuple[float, ...] | None = None
    interpolation: str = "bicubic"
    min_image_size: int = 32


TIMM_MODELS: dict[str, TimmRow] = {
    "timm-resnet18": TimmRow("timm ResNet-18 (a1 recipe)", "resnet18"),
    "timm-efficientnet-b0": TimmRow("timm EfficientNet-B0 (RandAugment)", "efficientnet_b0"),
    "timm-convnext-nano": TimmRow("timm ConvNeXt-nano (in12k, fine-tuned in1k)", "convnext_nano"),
}


def import_timm():
    try:
        import timm
    except ImportError:
        raise ConfigError(
            "The timm-* models need the timm package, which is not installed. Install it with "
            "`pip install 'cnnlab[timm]'` (or `pip install timm`)."
        ) from None
    return timm


class TimmClassifier(ClassifierModel):
    """A timm network kept whole as `net` (its state_dict keys stay timm's); timm's own
    forward_features / forward_head / reset_classifier / feature_info give the contract."""

    def __init__(self, row: TimmRow, in_channels: int, num_classes: int, dropout: float | None):
        super().__init__()
        timm = import_timm()
        self.net = timm.create_model(
            row.timm_name,
            pretrained=False,
            num_classes=num_classes,
            in_chans=in_channels,
            drop_rate=dropout or 0.0,
        )
        self.row = row
        self.feature_layers = tuple(f"net.{info['module']}" for info in self.net.feature_info)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)  # [B, C, h, w]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(features)  # [B, K]

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def reset_classifier(self, num_classes: int) -> None:
        device = next(self.net.parameters()).device
        self.net.reset_classifier(num_classes)
        self.net.get_classifier().to(device)


def _register(name: str, row: TimmRow) -> None:
    description = f"{row.description} ({UNTRAINED_NOTE})"

    @register_model(name, description, min_image_size=row.min_image_size)
    def build(
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float | None = None,
    ) -> TimmClassifier:
        log.info("%s: built %s.", name, UNTRAINED_NOTE)
        return TimmClassifier(row, in_channels, num_classes, dropout)

    build.__name__ = build.__qualname__ = name.replace("-", "_")
    build.__doc__ = description


for _name, _row in TIMM_MODELS.items():
    _register(_name, _row)
