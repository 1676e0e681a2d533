"""Blocks of the classic CNNs (seed slides 000 and 004): conv-norm-act (LeNet, VGG), residual
(He et al., 2016), dense + transition (Huang et al., 2017), inception (Szegedy et al., 2015),
depthwise-separable (Chollet, 2017), squeeze-excitation (Hu et al., 2018), classifier head."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError, UnknownNameError
from cnnlab.layers import DivisiveNormalization
from cnnlab.ops.activations import get_activation

NORMS = ("batch", "divisive", "none")


def make_activation(name: str) -> nn.Module:
    """A fresh module of the activation registered as `name` (cnnlab.ops.ACTIVATIONS); never
    in-place, so hooks on the layer before see its output. Old spellings warn and work."""
    try:
        return get_activation(name, stacklevel=2).module()
    except UnknownNameError as error:
        raise ConfigError(str(error)) from None


def make_norm(
    method: str, channels: int, kernel_size: int | tuple[int, int] = 5
) -> nn.Module | None:
    """Batch (nn.BatchNorm2d), divisive (over a kernel_size adjacency) or no normalisation."""
    if method == "batch":
        return nn.BatchNorm2d(channels)
    if method == "divisive":
        return DivisiveNormalization(kernel_size)
    if method == "none":
        return None
    raise ConfigError(f"Unknown normalisation {method!r}; expected one of {', '.join(NORMS)}.")


class ConvNormAct(nn.Sequential):
    """conv -> norm -> act, the convolutional layer of the slides. By default the conv has a bias
    only without batch norm, whose beta takes its place; padding keeps the size at stride 1."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm: str = "batch",
        activation: str | None = "relu",
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
            groups=groups, bias=norm != "batch" if bias is None else bias,
        )  # fmt: skip
        norm_layer = make_norm(norm, out_channels)
        if norm_layer is not None:
            self.norm = norm_layer
        if activation is not None:
            self.act = make_activation(activation)


class SeparableConv2d(nn.Sequential):
    """Depthwise-separable convolution (Xception): one kernel_size filter per band, then a 1x1
    convolution that mixes the bands into out_channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride, kernel_size // 2,
            groups=in_channels, bias=False,
        )  # fmt: skip
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)


class SqueezeExcitation(nn.Module):
    """Channel weights in [0, 1] from globally pooled maps, multiplied back onto the maps."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        reduced = max(1, channels // reduction)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)  # a dense layer on the 1x1 maps
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> same
        weights = self.gate(self.expand(self.act(self.reduce(self.squeeze(x)))))  # [B, C, 1, 1]
        return x * weights


class WithSqueezeExcitation(nn.Module):
    """Any block followed by squeeze-excitation of its output (SE-Inception and the like)."""

    def __init__(self, block: nn.Module, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.block = block
        self.se = SqueezeExcitation(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.block(x))


class ZeroPadShortcut(nn.Module):
    """The parameter-free shortcut of the CIFAR ResNets (option A): subsample by the stride and
    append zero bands up to out_channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C', H/s, W/s]
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


SHORTCUTS = ("projection", "zero-pad")


def make_shortcut(
    in_channels: int, out_channels: int, stride: int, kind: str = "projection"
) -> nn.Module | None:
    """None (identity) if the branch keeps the shape, else a 1x1 conv + BN projection (option B)
    or the zero-padding shortcut (option A, "zero-pad")."""
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "zero-pad" and out_channels >= in_channels:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind not in SHORTCUTS:
        raise ConfigError(f"Unknown shortcut {kind!r}; expected one of {', '.join(SHORTCUTS)}.")
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
    )


class BasicResidual(nn.Module):
    """Two 3x3 conv-BN with ReLU between, plus the shortcut: ReLU(h(x) + x) (ResNet-18/20/56).
    se_reduction adds squeeze-excitation to the branch before the addition (SE-ResNet)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        se_reduction: int | None = None,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, stride)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, activation=None)
        self.se = SqueezeExcitation(out_channels, se_reduction) if se_reduction else None
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(self.conv1(x))
        if self.se is not None:
            branch = self.se(branch)
        return self.act(branch + (x if self.shortcut is None else self.shortcut(x)))


class BottleneckResidual(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand, plus the shortcut (ResNet-50 and deeper)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        bottleneck_channels: int | None = None,
        se_reduction: int | None = None,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        width = bottleneck_channels or out_channels // 4
        self.conv1 = ConvNormAct(in_channels, width, 1)
        self.conv2 = ConvNormAct(width, width, 3, stride)
        self.conv3 = ConvNormAct(width, out_channels, 1, activation=None)
        self.se = SqueezeExcitation(out_channels, se_reduction) if se_reduction else None
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv3(self.conv2(self.conv1(x)))
        if self.se is not None:
            branch = self.se(branch)
        return self.act(branch + (x if self.shortcut is None else self.shortcut(x)))


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (bottleneck_width * growth_rate) - BN-ReLU-conv3x3 (growth_rate), whose
    output is concatenated to its input (DenseNet-BC)."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck_width: int = 4) -> None:
        super().__init__()
        width = bottleneck_width * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.act1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C + k, H, W]
        new = self.conv2(self.act2(self.norm2(self.conv1(self.act1(self.norm1(x))))))
        return torch.cat([x, new], dim=1)


class DenseBlock(nn.Sequential):
    """num_layers dense layers; each sees the concatenated maps of all before it."""

    def __init__(self, in_channels: int, num_layers: int, growth_rate: int) -> None:
        super().__init__()
        for index in range(num_layers):
            self.add_module(
                f"layer{index + 1}", DenseLayer(in_channels + index * growth_rate, growth_rate)
            )
        self.out_channels = in_channels + num_layers * growth_rate


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1 to out_channels, then 2x2 average pooling unless the maps are too small."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = True) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        if downsample:
            self.pool = nn.AvgPool2d(2)


class Inception(nn.Module):
    """GoogLeNet's module: 1x1, 1x1->3x3, 1x1->5x5 and 3x3 max pool->1x1 branches, concatenated
    along the bands (each conv with BN, as in later versions)."""

    def __init__(
        self,
        in_channels: int,
        branch1: int,
        branch3: tuple[int, int],
        branch5: tuple[int, int],
        pool_projection: int,
    ) -> None:
        super().__init__()
        self.branch1 = ConvNormAct(in_channels, branch1, 1)
        self.branch3 = nn.Sequential(
            ConvNormAct(in_channels, branch3[0], 1), ConvNormAct(branch3[0], branch3[1], 3)
        )
        self.branch5 = nn.Sequential(
            ConvNormAct(in_channels, branch5[0], 1), ConvNormAct(branch5[0], branch5[1], 5)
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, 1, 1), ConvNormAct(in_channels, pool_projection, 1)
        )
        self.out_channels = branch1 + branch3[1] + branch5[1] + pool_projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, out_channels, H, W]
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


class ClassifierHead(nn.Sequential):
    """Maps -> vector (average or max pooling to pool_size x pool_size, or flattening) -> hidden
    dense layers -> classifier `fc`. Dropout precedes every dense layer but the first, or `fc`
    if it is alone. in_features counts the values per image after pooling and flattening."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        pool: str = "avg",
        pool_size: int = 1,
        hidden_units: tuple[int, ...] = (),
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if pool == "avg":
            self.pool = nn.AdaptiveAvgPool2d(pool_size)
        elif pool == "max":
            self.pool = nn.AdaptiveMaxPool2d(pool_size)
        elif pool != "flatten":
            raise ConfigError(f"Unknown head pooling {pool!r}; expected avg, max or flatten.")
        self.flatten = nn.Flatten()
        features = in_features
        for index, units in enumerate(hidden_units, start=1):
            if index > 1 and dropout > 0:
                self.add_module(f"drop{index}", nn.Dropout(dropout))
            self.add_module(f"fc{index}", nn.Linear(features, units))
            self.add_module(f"act{index}", make_activation(activation))
            features = units
        if dropout > 0:
            self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)
