"""Kernels and kernel banks: the named 3 x 3 kernels of the seed slides, and seeded random banks.

Named kernels come from slides 000 (the Sobel-like worked example), 002 (identity, outline,
Sobel left/bottom, lighten, darken), 003 (dx, dy, Gaussian) and 004 (sharpen, box blur, edges).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cnnlab.errors import ConfigError
from cnnlab.ops.adjacency import _pair
from cnnlab.registry import Registry
from cnnlab.specs.operations import NAMED_KERNELS


@dataclass(frozen=True)
class NamedKernel:
    """A w x h x 1 kernel W(q_i - p), rows top to bottom, as printed on the slides."""

    name: str
    rows: tuple[tuple[float, ...], ...]
    description: str
    slide: str

    def tensor(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:  # [h, w]
        return torch.tensor(self.rows, dtype=dtype)


KERNELS: Registry[NamedKernel] = Registry("kernel")


for _spec in NAMED_KERNELS:
    KERNELS.add(_spec.name, NamedKernel(_spec.name, _spec.rows, _spec.description, _spec.slide))
del _spec


def kernel_bank(
    names: Sequence[str], in_channels: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A bank of named kernels for m-band images: [b, m, h, w], b = len(names).

    A named kernel is 2-D; for m bands each band gets the kernel divided by m, so the output is
    the kernel applied to the mean of the bands (a grey image and its 3-band copy give the same
    result).
    """
    if not names:
        raise ConfigError(f"A kernel bank needs at least one kernel name; choose from {_names()}.")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be at least 1; got {in_channels}.")
    kernels = [KERNELS.get(name).tensor(dtype) for name in names]  # each [h, w]
    shapes = {tuple(k.shape) for k in kernels}
    if len(shapes) != 1:
        raise ConfigError(f"Kernels in one bank must share a size; {list(names)} have {shapes}.")
    bank = torch.stack(kernels).unsqueeze(1) / in_channels  # [b, 1, h, w]
    return bank.expand(-1, in_channels, -1, -1).contiguous()  # [b, m, h, w]


def random_kernel_bank(
    num_kernels: int,
    in_channels: int,
    kernel_size: int | tuple[int, int] = 5,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """b random kernels of h x w x m with zero mean and unit norm: [b, m, h, w].

    Weights are drawn from a normal distribution with a generator seeded by seed (the same seed
    gives the same bank on every machine), then each kernel is centred (unless it has a single
    weight) and scaled to norm 1, so that it responds to patterns rather than to brightness
    (slide 000 uses a random bank of 5 x 5 x 3 kernels before an SVM).
    """
    height, width = _pair(kernel_size, "kernel_size")
    if num_kernels < 1 or in_channels < 1:
        raise ConfigError(
            f"A random bank needs num_kernels >= 1 and in_channels >= 1; got {num_kernels} and "
            f"{in_channels}."
        )
    generator = torch.Generator().manual_seed(seed)
    bank = torch.randn(num_kernels, in_channels, height, width, generator=generator, dtype=dtype)
    if height * width * in_channels > 1:  # a single weight minus its mean would be 0
        bank = bank - bank.mean(dim=(1, 2, 3), keepdim=True)
    return bank / bank.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _names() -> str:
    return ", ".join(KERNELS.names())
