"""Normalisations of one image or a set of images: linear, divisive and batch normalisation.

Follows seed slide 000 ("Linear normalization", "Divisive normalization", "Batch normalization"),
formula by formula; where a guard against 0/0 is needed, the docstring says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.ops.adjacency import Adjacency, _check_images, _pair, neighbourhood_values

SLIDES_DIVISIVE_KERNEL_SIZE = (5, 25)  # (height, width): the slides' C has w = 25 and h = 5


def linear_normalization(images: torch.Tensor, mode: str = "image") -> torch.Tensor:
    """Map each band linearly onto [0, 1]: [B, C, H, W] -> [B, C, H, W].

    mode="image": N_k(p) = (I_k(p) - min_q I_k(q)) / (max_q I_k(q) - min_q I_k(q)) with q over
    the image domain D_I, for each image and band (the slides' first formula).
    mode="set": the min and max are taken per pixel p and band k over the n images of the batch,
    N_k(p) = (I_k(p) - min_j I_jk(p)) / (max_j I_jk(p) - min_j I_jk(p)) (the second formula).
    Where max = min the formula is 0/0; those values become 0.
    """
    _check_images(images)
    if mode == "image":
        dims = (2, 3)
    elif mode == "set":
        dims = (0,)
    else:
        raise ConfigError(
            f"Unknown linear normalisation mode {mode!r}; expected 'image' (per image and band, "
            "min/max over its pixels) or 'set' (per pixel and band, min/max over the images)."
        )
    low = images.amin(dim=dims, keepdim=True)
    spread = images.amax(dim=dims, keepdim=True) - low
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))  # 0/0 -> 0
    return (images - low) / spread


def divisive_normalization(
    images: torch.Tensor,
    kernel_size: int | tuple[int, int] | Adjacency,
    epsilon: float = 1e-6,
) -> torch.Tensor:
    """N_k(p) = I_k(p) / sqrt(sum_{q in C(p)} I_k(q)^2 + epsilon): [B, C, H, W] -> same shape.

    C is a rectangle given as kernel_size = (height, width) like torch (the slides' example,
    w = 25 and h = 5, is kernel_size=(5, 25)), or any Adjacency. Only q inside the image domain
    count (zero padding adds nothing to the sum). epsilon, added under the square root, keeps a
    region that is all zero at 0 instead of 0/0 and keeps the gradient finite; it is negligible
    once the sum of squares is much larger than epsilon. Since p is in C(p), |N_k(p)| < 1.
    """
    _check_images(images)
    if not epsilon >= 0:
        raise ConfigError(f"epsilon must be >= 0; got {epsilon!r}.")
    squares = images * images  # [B, C, H, W]
    if isinstance(kernel_size, Adjacency):
        energy = neighbourhood_values(squares, kernel_size).sum(dim=2)
    else:
        height, width = _pair(kernel_size, "kernel_size")
        # Same window placement as rectangular_adjacency: odd sizes centred on p.
        up, left = (height - 1) // 2, (width - 1) // 2
        padded = F.pad(squares, (left, width - 1 - left, up, height - 1 - up))
        energy = F.avg_pool2d(padded, (height, width), stride=1, divisor_override=1)
    return images / torch.sqrt(energy + epsilon)


def batch_normalization(
    images: torch.Tensor,
    gamma: float | torch.Tensor = 1.0,
    beta: float | torch.Tensor = 0.0,
    statistics: str = "pixel",
    epsilon: float = 1e-8,
) -> torch.Tensor:
    """The slides' batch normalisation of a set of n images: [n, C, H, W] -> [n, C, H, W].

    N_k(p) = (I_k(p) - mu_k(p)) / sigma_k(p) * gamma + beta, with
    mu_k(p) = 1/n sum_j I_jk(p) and sigma_k(p)^2 = 1/(n-1) sum_j (I_jk(p) - mu_k(p))^2 (the
    slide writes I_k(p) inside the second sum; summing over j, it can only mean I_jk(p)):
    statistics="pixel" (the slides' form) takes them per pixel p and band k over the n images;
    statistics="channel" takes them per band over all n*H*W values (torch's grouping).
    gamma and beta default to 1 and 0; tensors broadcast against [n, C, H, W] (e.g. [C, 1, 1]).
    sigma is taken as at least epsilon, so a value that is the same in all n images maps to beta
    instead of 0/0; otherwise the formula is exactly the slides'.

    How it differs from torch.nn.BatchNorm2d (in training mode):
    - torch divides by the biased standard deviation (variance over n, not n - 1); its output
      equals this one times sqrt(n / (n - 1)), n being the number of values per statistic;
    - torch adds eps = 1e-5 inside the square root, (x - mu) / sqrt(var + eps);
    - torch always takes statistics per channel over batch and pixels, never per pixel;
    - torch keeps running mean and variance for evaluation; this function keeps no state;
    - torch's gamma and beta are learnable vectors with one entry per channel.
    """
    _check_images(images)
    if statistics == "pixel":
        dims = (0,)
    elif statistics == "channel":
        dims = (0, 2, 3)
    else:
        raise ConfigError(
            f"Unknown batch statistics {statistics!r}; expected 'pixel' (the slides' mu_k(p), "
            "per pixel and band over the images) or 'channel' (per band, as torch)."
        )
    count = 1
    for dim in dims:
        count *= images.shape[dim]
    if count < 2:
        raise ConfigError(
            f"Batch normalisation with statistics={statistics!r} needs at least 2 values per "
            f"statistic (the variance divides by n - 1); got images of shape "
            f"{tuple(images.shape)}. Normalise a set of 2 or more images, or use "
            "statistics='channel' for a single image."
        )
    mean = images.mean(dim=dims, keepdim=True)
    variance = images.var(dim=dims, correction=1, keepdim=True)
    sigma = torch.sqrt(variance.clamp_min(epsilon * epsilon))
    return (images - mean) / sigma * gamma + beta
