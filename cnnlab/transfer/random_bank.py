"""The slides' random kernel bank features (seed slide 000): LN -> CO (a seeded bank of random
5x5xC kernels) -> BN (per pixel, statistics of the training images) -> RL -> PO, optionally a
second CO -> BN -> RL -> PO, then flattened for an SVM. Built on cnnlab.ops, batched in torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from cnnlab import ops
from cnnlab.errors import ConfigError

BATCH_SIZE = 512


@dataclass(frozen=True)
class RandomBankSettings:
    num_kernels: int = 16  # B kernels per layer
    kernel_size: int = 5  # 5 x 5 x C, as the slides' 5 x 5 x 3
    layers: int = 1
    pool_size: int = 3
    pool_stride: int = 2
    seed: int = 0  # layer l draws its bank with seed + l, like `cnnlab ops --random-bank`

    def to_dict(self) -> dict:
        return asdict(self)


class RandomBankFeatures:
    """Fit the per-pixel BN statistics on training images, then map any images to features.

    The slides' BN uses mu_k(p) and sigma_k(p) of a set of images; here the set is the training
    images only, and the same statistics are applied to validation and test images, so no test
    image influences its own features.
    """

    def __init__(self, settings: RandomBankSettings = RandomBankSettings()) -> None:
        if settings.layers not in (1, 2):
            raise ConfigError(f"The random bank has 1 or 2 layers; got {settings.layers}.")
        self.settings = settings
        self.banks: list[torch.Tensor] = []
        self.statistics: list[tuple[torch.Tensor, torch.Tensor]] = []  # (mean, sigma) [1,B,H,W]

    def fit(self, images: torch.Tensor) -> RandomBankFeatures:
        """images: uint8 [N, C, H, W] with N >= 2 (the variance divides by N - 1)."""
        if len(images) < 2:
            raise ConfigError(
                f"The random bank's batch normalisation needs 2 or more training images; got "
                f"{len(images)}. Use more training images."
            )
        self.banks, self.statistics = [], []
        in_channels = images.shape[1]
        for layer in range(self.settings.layers):
            size, seed = self.settings.kernel_size, self.settings.seed + layer
            self.banks.append(
                ops.random_kernel_bank(self.settings.num_kernels, in_channels, size, seed)
            )
            self.statistics.append(self._pixel_statistics(images, layer))
            in_channels = self.settings.num_kernels
        return self

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] -> float32 [N, D], D = B * H' * W' of the last pooling."""
        if not self.banks:
            raise ConfigError("RandomBankFeatures.transform before fit; call fit(train) first.")
        parts = [
            ops.flatten_features(self._forward(batch, self.settings.layers))
            for batch in images.split(BATCH_SIZE)
        ]
        return torch.cat(parts)

    def _forward(self, images: torch.Tensor, layers: int, until_conv: bool = False):
        """The first `layers` layers; with until_conv the last one stops after its CO."""
        x = ops.linear_normalization(images.float(), "image")  # LN: [N, C, H, W] on [0, 1]
        window = ops.rectangular_adjacency(self.settings.pool_size, self.settings.pool_size)
        for layer in range(layers):
            x = ops.conv2d(x, self.banks[layer], padding="same")  # CO: [N, B, H, W]
            if until_conv and layer == layers - 1:
                return x
            mean, sigma = self.statistics[layer]
            x = (x - mean) / sigma  # BN with the training images' mu_k(p), sigma_k(p)
            x = ops.relu(x)  # RL
            x = ops.pool2d(x, window, "max", self.settings.pool_stride)  # PO
        return x

    def _pixel_statistics(self, images: torch.Tensor, layer: int):
        """mu_k(p) and sigma_k(p) (n - 1 in the variance, as the slides) of layer's CO output
        over the training images, accumulated in float64 batch by batch."""
        total = squares = None
        for batch in images.split(BATCH_SIZE):
            x = self._forward(batch, layer + 1, until_conv=True).double()  # [b, B, H, W]
            total = x.sum(0) if total is None else total + x.sum(0)
            squares = (x * x).sum(0) if squares is None else squares + (x * x).sum(0)
        n = len(images)
        mean = total / n
        variance = ((squares - n * mean * mean) / (n - 1)).clamp_min(0.0)
        sigma = variance.sqrt().clamp_min(1e-8)  # as ops.batch_normalization's guard
        return mean.float().unsqueeze(0), sigma.float().unsqueeze(0)


def raw_pixel_features(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 [N, C*H*W] on [0, 1]: the slides' input-layer feature vector
    (the bands concatenated), what the raw-pixel SVM is trained on."""
    return ops.flatten_features(images.float() / 255.0)
