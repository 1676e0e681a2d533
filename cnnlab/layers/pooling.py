"""Min pooling as an nn.Module, the pooling torch lacks (seed slide 000, "Pooling": min-pooling)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.ops.pooling import min_pool2d


class MinPool2d(nn.Module):
    """P_k(p) = min over q in B(p) of R_k(q), with nn.MaxPool2d's conventions.

    kernel_size, stride and padding are one int or (height, width); stride defaults to
    kernel_size; padded positions never win. Works for any number of channels.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C, H', W']
        return min_pool2d(images, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
