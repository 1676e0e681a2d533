"""Convolution with a kernel bank: zero padding (valid, same, explicit), strides, 1 x 1 banks.

Follows seed slide 000 (J_k(p) = sum_i <I(q_i), w_k,i>), slide 002 (convolution by hand, padding,
stride) and slide 003 (output size (W - F + 2P) / S + 1 and parameter count K^2 C N + N). As in
the slides and torch, the kernel is not flipped (cross-correlation, in signal-processing terms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.ops.adjacency import Adjacency, _check_images, _pair, neighbourhood_values

Padding = str | int | tuple[int, int]


def conv2d(
    images: torch.Tensor,
    kernels: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: Padding = "same",
    dilation: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """Convolve m-band images with b kernels: [B, m, H, W] * [b, m, h, w] -> [B, b, H', W'].

    padding="same" zero-pads so that p runs over all of D_I (with stride s the output is
    ceil(H / s) x ceil(W / s); torch refuses "same" with strides, this does not); "valid" keeps
    only the p whose whole window lies inside D_I; an int or (height, width) pads explicitly.
    Even kernel sizes put the extra row/column of padding after the image, as torch does.
    """
    _check_images(images)
    _check_bank(kernels, images.shape[1])
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            (top, bottom), (left, right) = (
                _same_padding(kernels.shape[2], dilation[0]),
                _same_padding(kernels.shape[3], dilation[1]),
            )
            images = F.pad(images, (left, right, top, bottom))  # zeros
            padding = 0
        else:
            raise ConfigError(
                f"Unknown padding {padding!r}; expected 'same', 'valid', an int or (height, width)."
            )
    return F.conv2d(images, kernels, bias, stride=stride, padding=padding, dilation=dilation)


def _same_padding(size: int, dilation: int) -> tuple[int, int]:
    total = (size - 1) * dilation
    return total // 2, total - total // 2


def adjacency_conv2d(
    images: torch.Tensor,
    adjacency: Adjacency,
    weights: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
) -> torch.Tensor:
    """The slides' formula over any adjacency: J_k(p) = sum_i <I(q_i), w_k,i> (+ bias w_k,0).

    weights [b, m, |A|] hold w_k,i for the offsets of adjacency in order; q_i outside D_I count
    as 0 (zero padding), and p runs over D_I with the stride: [B, m, H, W] -> [B, b, H', W'].
    """
    _check_images(images)
    if weights.ndim != 3 or weights.shape[1:] != (images.shape[1], len(adjacency)):
        raise ConfigError(
            f"Weights for {images.shape[1]}-band images over an adjacency of "
            f"{len(adjacency)} pixels must have shape [b, {images.shape[1]}, {len(adjacency)}]; "
            f"got {tuple(weights.shape)}."
        )
    neighbours = neighbourhood_values(images, adjacency, 0.0, stride)  # [B, m, |A|, H', W']
    out = torch.einsum("bmihw,kmi->bkhw", neighbours, weights)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def band_reduction(
    images: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Reduce m bands to b with b kernels of 1 x 1 x m: [B, m, H, W] * [b, m] -> [B, b, H, W]."""
    _check_images(images)
    if weights.ndim != 2 or weights.shape[1] != images.shape[1]:
        raise ConfigError(
            f"A 1 x 1 bank for {images.shape[1]}-band images must have shape "
            f"[b, {images.shape[1]}]; got {tuple(weights.shape)}."
        )
    out = torch.einsum("bmhw,km->bkhw", images, weights)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def conv_output_size(
    input_size: int, kernel_size: int, padding: int = 0, stride: int = 1, dilation: int = 1
) -> int:
    """Output length along one axis: floor((W - F + 2P) / S) + 1, F being the dilated kernel size.

    Slide 003: a 28-pixel input, F = 5, P = 1, S = 1 gives (28 - 5 + 2) / 1 + 1 = 26.
    """
    span = dilation * (kernel_size - 1) + 1
    if input_size + 2 * padding < span or stride < 1:
        raise ConfigError(
            f"A kernel spanning {span} pixels does not fit in an input of {input_size} pixels "
            f"with padding {padding} (stride {stride}); use more padding or a smaller kernel."
        )
    return (input_size - span + 2 * padding) // stride + 1


def conv_parameter_count(
    in_channels: int, num_kernels: int, kernel_size: int | tuple[int, int], bias: bool = True
) -> int:
    """Trainable parameters of one convolutional layer: K_h K_w C N weights plus N biases.

    Slide 003: C = 3 bands, N = 8 kernels of 5 x 5 give 5^2 * 3 * 8 + 8 = 608.
    """
    height, width = _pair(kernel_size, "kernel_size")
    return height * width * in_channels * num_kernels + (num_kernels if bias else 0)


def _check_bank(kernels: torch.Tensor, bands: int) -> None:
    if not isinstance(kernels, torch.Tensor) or kernels.ndim != 4 or kernels.shape[1] != bands:
        shape = tuple(kernels.shape) if isinstance(kernels, torch.Tensor) else kernels
        raise ConfigError(
            f"A kernel bank for {bands}-band images must be a tensor [b, {bands}, h, w]; got "
            f"{shape}. Build one with kernel_bank(names, in_channels={bands}) or "
            f"random_kernel_bank(b, in_channels={bands})."
        )
