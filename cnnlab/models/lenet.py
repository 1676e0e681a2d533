"""LeNet-5 (LeCun et al., 1998), sized to the input: C1-S2-C3-S4-C5-F6-output.

For inputs of 28x28 or more it is the classic network (C1 padded to keep 28x28 as the paper's 32x32
input did); for smaller inputs (scikit-learn's 8x8 digits) C3 is padded so the maps do not vanish.
Subsampling is max pooling and the activations ReLU, as in most modern re-implementations.
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.base import ClassifierModel, spatial_size_after
from cnnlab.models.registry import register_model


class LeNet5(ClassifierModel):
    feature_layers = ("features.c1", "features.c3", "features.c5")

    def __init__(
        self, in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float
    ) -> None:
        super().__init__()
        height, width = image_size
        c3_padding = 0 if min(height, width) // 2 >= 10 else 2
        h = spatial_size_after(spatial_size_after(height, 2, 2), 5, 1, c3_padding) // 2
        w = spatial_size_after(spatial_size_after(width, 2, 2), 5, 1, c3_padding) // 2
        if h < 1 or w < 1:
            raise ValueError(f"LeNet-5 needs images of at least 4x4 pixels, got {height}x{width}.")
        self.features = nn.Sequential()
        self.features.add_module("c1", _conv_relu(in_channels, 6, padding=2))
        self.features.add_module("s2", nn.MaxPool2d(2))
        self.features.add_module("c3", _conv_relu(6, 16, padding=c3_padding))
        self.features.add_module("s4", nn.MaxPool2d(2))
        # C5 is a 5x5 convolution over the 5x5 maps in the paper, i.e. a dense layer on them.
        self.features.add_module(
            "c5", nn.Sequential(nn.Flatten(), nn.Linear(16 * h * w, 120), nn.ReLU(inplace=True))
        )
        self.head = nn.Sequential()
        self.head.add_module("f6", nn.Sequential(nn.Linear(120, 84), nn.ReLU(inplace=True)))
        self.head.add_module("dropout", nn.Dropout(dropout))
        self.head.add_module("fc", nn.Linear(84, num_classes))


def _conv_relu(in_channels: int, out_channels: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=padding),
        nn.ReLU(inplace=True),
    )


@register_model(
    "lenet5", "LeNet-5: two 5x5 conv + max-pool stages, dense 120-84-classes", min_image_size=4
)
def lenet5(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float = 0.0
) -> LeNet5:
    """LeNet-5 (LeCun et al., 1998) adapted to the input size and bands."""
    return LeNet5(in_channels, num_classes, image_size, dropout)
