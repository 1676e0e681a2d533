"""Divisive and linear normalisation as nn.Modules (seed slide 000, "Divisive normalization" and
"Linear normalization"); both have no parameters and work for any number of channels."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.ops.normalization import (
    LINEAR_NORMALIZATION_MODES,
    divisive_normalization,
    linear_normalization,
)


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
