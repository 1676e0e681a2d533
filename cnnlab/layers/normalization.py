"""Divisive, linear and the slides' batch normalisation as nn.Modules (seed slide 000,
"Divisive normalization", "Linear normalization", "Batch normalization"), for any channel count."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.ops.normalization import (
    batch_normalization,
    divisive_normalization,
    linear_normalization,
)
from cnnlab.specs.operations import BATCH_STATISTICS, LINEAR_NORMALIZATION_MODES


class DivisiveNormalization(nn.Module):
    """N_k(p) = I_k(p) / sqrt(sum over q in C(p) of I_k(q)^2 + epsilon), per band.

    kernel_size is the rectangle C as (height, width) like torch, or one int for a square.
    The slides' example, w = 25 wide and h = 5 high, is DivisiveNormalization((5, 25)).
    """

    def __init__(self, kernel_size: int | tuple[int, int] = 5, epsilon: float = 1e-6) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.epsilon = epsilon

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> same
        return divisive_normalization(images, self.kernel_size, self.epsilon)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, epsilon={self.epsilon}"


class LinearNormalization(nn.Module):
    """Each band mapped linearly onto [0, 1]: mode="image" uses each image's min and max per band,
    mode="set" the min and max per pixel and band over the images of the batch."""

    def __init__(self, mode: str = "image") -> None:
        super().__init__()
        if mode not in LINEAR_NORMALIZATION_MODES:
            raise ConfigError(
                f"Unknown linear normalisation mode {mode!r}; expected one of "
                f"{', '.join(LINEAR_NORMALIZATION_MODES)}."
            )
        self.mode = mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> same
        return linear_normalization(images, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class BatchNormalization(nn.Module):
    """The slides' batch normalisation, (I_k(p) - mu_k(p)) / sigma_k(p) * gamma + beta, with
    unbiased sigma (n - 1) and learnable gamma and beta (initially 1 and 0).

    num_channels=None keeps gamma and beta as the slides' two scalars; an int gives one pair per
    band, as torch does. statistics="pixel" is the slides' mu_k(p) (per pixel and band over the
    batch); "channel" pools each band's pixels too. Like the slides, and unlike
    nn.BatchNorm2d, there are no running averages: statistics always come from the batch at
    hand, in evaluation too, so evaluate in batches of 2 or more images. See
    cnnlab.ops.batch_normalization for every difference from nn.BatchNorm2d.
    """

    def __init__(
        self, num_channels: int | None = None, statistics: str = "pixel", epsilon: float = 1e-8
    ) -> None:
        super().__init__()
        if statistics not in BATCH_STATISTICS:
            raise ConfigError(
                f"Unknown batch statistics {statistics!r}; expected one of "
                f"{', '.join(BATCH_STATISTICS)}."
            )
        shape = () if num_channels is None else (num_channels, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.statistics = statistics
        self.epsilon = epsilon

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [n, C, H, W] -> same
        return batch_normalization(images, self.gamma, self.beta, self.statistics, self.epsilon)

    def extra_repr(self) -> str:
        return f"gamma shape={tuple(self.gamma.shape)}, statistics={self.statistics!r}"
