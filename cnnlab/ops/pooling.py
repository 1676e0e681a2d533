"""Pooling: max, min and average over an adjacency B with strides, and global pooling.

Follows seed slide 000 ("Pooling": P_k(p) = max/min/mean over q in B(p) of R_k(q), strides s_x,
s_y) and slide 002 ("Pooling layer": 2 x 2 windows, stride 2, and global average pooling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.ops.adjacency import (
    Adjacency,
    _check_images,
    neighbourhood_values,
    rectangular_adjacency,
)
from cnnlab.specs.operations import POOLING_MODES


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
    adjacency: Adjacency | int | tuple[int, int],
    mode: str = "max",
    stride: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """The slides' pooling over any adjacency B: [B, C, H, W] -> [B, C, ceil(H/s_y), ceil(W/s_x)].

    P_k(p) aggregates R_k(q) for q in B(p) inside the image domain: neighbours outside D_I are
    left out, so the average at a border divides by the number of pixels that are really there
    (torch's avg_pool2d with count_include_pad=False). p runs over D_I with the given strides.

    `adjacency` may also be k or (height, width), as torch's kernel_size: a k x k window
    (rectangular_adjacency), with the stride defaulting to the window as in torch, so
    pool2d(x, 2) is F.max_pool2d(x, 2) on even sizes; an odd window is centred on p, as the
    slides' relation is. For an Adjacency the stride defaults to 1.
    """
    if mode not in POOLING_MODES:
        raise ConfigError(
            f"Unknown pooling mode {mode!r}; expected one of {', '.join(POOLING_MODES)}."
        )
    _check_images(images)
    if not isinstance(adjacency, Adjacency):
        height, width = _window(adjacency)
        adjacency = rectangular_adjacency(width, height)
        stride = (height, width) if stride is None else stride
    stride = 1 if stride is None else stride
    window = adjacency.rectangle()
    if window is not None and (mode != "average" or window[2] == 1):
        return _pool_rectangle(images, window, mode, stride)
    # Any other relation: |B| shifted copies of the image, so memory grows with |B|.
    if mode == "max":
        return neighbourhood_values(images, adjacency, -torch.inf, stride).amax(dim=2)
    if mode == "min":
        return neighbourhood_values(images, adjacency, torch.inf, stride).amin(dim=2)
    ones = torch.ones_like(images[:1, :1])  # [1, 1, H, W]: counts the pixels inside D_I
    total = neighbourhood_values(images, adjacency, 0.0, stride).sum(dim=2)
    count = neighbourhood_values(ones, adjacency, 0.0, stride).sum(dim=2)
    return total / count  # [B, C, H', W']


def _window(size: object) -> tuple[int, int]:
    """(height, width) of a window given as k or (height, width), as torch's kernel_size."""
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
    ):
        raise ConfigError(
            f"pool2d's adjacency {size!r} is neither an Adjacency nor a window size: pass "
            "rectangular_adjacency(width, height), adjacency_from_offsets(...), k for a k x k "
            "window, or (height, width)."
        )
    return pair[0], pair[1]


def _pool_rectangle(
    images: torch.Tensor, window: tuple[int, int, int], mode: str, stride: int | tuple[int, int]
) -> torch.Tensor:
    """pool2d for rectangular_adjacency(width, height, dilation) with torch's pooling kernels."""
    height, width, dilation = window
    up, left = (height - 1) // 2 * dilation, (width - 1) // 2 * dilation
    down, right = (height - 1) * dilation - up, (width - 1) * dilation - left
    pads = (left, right, up, down)
    if mode == "average":  # dilation is 1 here: torch's avg_pool2d has no dilation
        total = F.avg_pool2d(F.pad(images, pads), (height, width), stride, divisor_override=1)
        ones = F.pad(torch.ones_like(images[:1, :1]), pads)  # 1 inside D_I, 0 outside
        count = F.avg_pool2d(ones, (height, width), stride, divisor_override=1)
        return total / count
    sign = 1.0 if mode == "max" else -1.0  # min pooling is max pooling of -R
    padded = F.pad(sign * images, pads, value=-torch.inf)  # outside D_I never wins
    return sign * F.max_pool2d(padded, (height, width), stride, dilation=dilation)


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
