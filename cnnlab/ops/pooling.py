"""Pooling: max, min and average over an adjacency B with strides, and global pooling.

Follows seed slide 000 ("Pooling": P_k(p) = max/min/mean over q in B(p) of R_k(q), strides s_x,
s_y) and slide 002 ("Pooling layer": 2 x 2 windows, stride 2, and global average pooling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.ops.adjacency import Adjacency, _check_images, neighbourhood_values

POOLING_MODES = ("max", "min", "average")


def min_pool2d(
    images: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """Min pooling with torch's max_pool2d conventions: [B, C, H, W] -> [B, C, H', W'].

    kernel_size, stride and padding are (height, width) or one int; stride defaults to
    kernel_size; padded positions never win (as -inf never wins torch's max pooling).
    """
    _check_images(images)
    return -F.max_pool2d(-images, kernel_size, stride=stride, padding=padding)


def pool2d(
    images: torch.Tensor,
    adjacency: Adjacency,
    mode: str = "max",
    stride: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """The slides' pooling over any adjacency B: [B, C, H, W] -> [B, C, ceil(H/s_y), ceil(W/s_x)].

    P_k(p) aggregates R_k(q) for q in B(p) inside the image domain: neighbours outside D_I are
    left out, so the average at a border divides by the number of pixels that are really there
    (torch's avg_pool2d with count_include_pad=False). p runs over D_I with the given strides.
    """
    if mode not in POOLING_MODES:
        raise ConfigError(
            f"Unknown pooling mode {mode!r}; expected one of {', '.join(POOLING_MODES)}."
        )
    if mode == "max":
        return neighbourhood_values(images, adjacency, -torch.inf, stride).amax(dim=2)
    if mode == "min":
        return neighbourhood_values(images, adjacency, torch.inf, stride).amin(dim=2)
    ones = torch.ones_like(images[:1, :1])  # [1, 1, H, W]: counts the pixels inside D_I
    total = neighbourhood_values(images, adjacency, 0.0, stride).sum(dim=2)
    count = neighbourhood_values(ones, adjacency, 0.0, stride).sum(dim=2)
    return total / count  # [B, C, H', W']


def global_pool2d(images: torch.Tensor, mode: str = "average") -> torch.Tensor:
    """One value per band over the whole domain D_I: [B, C, H, W] -> [B, C]."""
    _check_images(images)
    if mode == "average":
        return images.mean(dim=(2, 3))
    if mode == "max":
        return images.amax(dim=(2, 3))
    if mode == "min":
        return images.amin(dim=(2, 3))
    raise ConfigError(f"Unknown pooling mode {mode!r}; expected one of {', '.join(POOLING_MODES)}.")
