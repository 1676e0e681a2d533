"""The one model contract every cnnlab network honours (STYLE.md rule 3).

Explain and transfer code use only this interface: `forward_features`, `forward_head`,
`num_classes`, `reset_classifier(n)` and `feature_layers`, never the model's class.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassifierModel(nn.Module):
    """Base class: subclasses set `self.features`, `self.head` and `feature_layers`.

    `features` maps images [B, C, H, W] to a feature tensor; `head` maps that to logits
    [B, num_classes] and must end in an `nn.Linear` named `fc`.
    """

    feature_layers: tuple[str, ...] = ()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def num_classes(self) -> int:
        return self.head.fc.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer by a freshly initialised one with `num_classes` outputs."""
        old = self.head.fc
        self.head.fc = nn.Linear(old.in_features, num_classes, bias=old.bias is not None).to(
            old.weight.device
        )


def spatial_size_after(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling window along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def init_conv_weights(model: nn.Module) -> None:
    """He (Kaiming) normal initialisation of every convolution, the usual one for ReLU networks."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def init_he_fan_in(model: ClassifierModel) -> None:
    """He normal initialisation with fan-in (which keeps the forward signal's scale, and gives
    depthwise filters their true fan-in) of every conv and hidden dense layer: all but head.fc.
    Plain stacks without batch norm need it; torch's default shrinks the signal layer by layer."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module is not model.head.fc:
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def uses_imagenet_stem(image_size: tuple[int, int]) -> bool:
    """Images of 64 px and more get the ImageNet stems (large strided kernels, early pooling);
    smaller ones (28x28, 32x32, 8x8) a stride-1 3x3 stem that keeps their few pixels."""
    return min(image_size) >= 64
