"""A whitened first layer: the stem convolution set to the training patches' whitening transform.

The idea is airbench's (Keller Jordan, 2024): a stem of 2 x C x k x k filters of size k x k whose
first half are the eigenvectors of the covariance of the training images' k x k patches, each
divided by the square root of its eigenvalue, and whose second half are their negatives (so a
ReLU-like activation after it loses nothing). The network sees decorrelated, unit-variance inputs
from the first step; the filters stay fixed while the rest trains. BENCHMARKS.md has what it was
measured to give here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError

WHITENING_IMAGES = 5000  # patches of this many training images estimate the covariance
EPSILON = 5e-4  # added to every eigenvalue: bounds the gain of near-constant directions


def whitening_filters(images: torch.Tensor, kernel: int, epsilon: float = EPSILON) -> torch.Tensor:
    """Normalised float images [N, C, H, W] -> filters [2 * C * k * k, C, k, k].

    Row i of the first half is the i-th eigenvector of the patch covariance (largest eigenvalue
    first) over sqrt(eigenvalue + epsilon); a convolution with these filters maps the patches
    to (nearly) uncorrelated features of unit variance."""
    channels = images.shape[1]
    size = channels * kernel * kernel
    patches = F.unfold(images.double(), kernel)  # [N, C*k*k, L], every position (stride 1)
    patches = patches.transpose(1, 2).reshape(-1, size)  # [N*L, C*k*k]
    covariance = torch.cov(patches.T)  # [C*k*k, C*k*k]
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + epsilon)[:, None]
    filters = filters.reshape(size, channels, kernel, kernel)
    return torch.cat([filters, -filters]).float()


def whitening_stem(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The model's first convolution, if it has the shape a whitening stem needs."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            channels, (height, width) = module.in_channels, module.kernel_size
            wanted = 2 * channels * height * width
            if height != width or module.out_channels != wanted or module.groups != 1:
                raise ConfigError(
                    f"--whiten-stem needs a first convolution of 2 x bands x k x k filters of "
                    f"size k x k (e.g. conv24x2p0 for colour images, conv8x2p0 for grey); this "
                    f"model's first convolution '{name}' has {module.out_channels} filters of "
                    f"{height} x {width} on {channels} bands. Change the model or leave the "
                    "option out."
                )
            return name, module
    raise ConfigError("--whiten-stem needs a model that starts with a convolution; this has none.")


def freeze_stem(model: nn.Module) -> str:
    """Keep the stem's filters fixed (before the optimiser is built, new run or resumed)."""
    name, stem = whitening_stem(model)
    stem.weight.requires_grad_(False)
    return name


def whitening_sample(count: int, seed: int) -> torch.Tensor:
    """Indices of the training images whose patches are used (a seeded draw: splits are often
    ordered by class)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:WHITENING_IMAGES]


@torch.no_grad()
def whiten_stem(model: nn.Module, images: torch.Tensor) -> str:
    """Set the stem's filters (and zero its bias) from normalised training images [N, C, H, W]
    (whitening_sample's); returns the stem's name."""
    name, stem = whitening_stem(model)
    filters = whitening_filters(images.float(), stem.kernel_size[0])
    stem.weight.copy_(filters.to(stem.weight.device))
    if stem.bias is not None:
        stem.bias.zero_()
    return name
