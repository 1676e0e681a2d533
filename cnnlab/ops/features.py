"""Global feature vectors of images: flattening and global pooling.

Follows seed slide 000 ("Global feature spaces"): X(I) = B_1 ^ B_2 ^ ... ^ B_m, each band vector
B_k = (I_k(p_1), ..., I_k(p_|D_I|)) in raster order; and slide 002's global average pooling.
"""

from __future__ import annotations

import torch

from cnnlab.errors import ConfigError
from cnnlab.ops.adjacency import _check_images
from cnnlab.ops.pooling import global_pool2d

FEATURE_METHODS = ("flatten", "average", "max")


def flatten_features(images: torch.Tensor) -> torch.Tensor:
    """The band vectors concatenated band by band: [B, C, H, W] -> [B, C * H * W]."""
    _check_images(images)
    return images.reshape(images.shape[0], -1)  # band-major, rows top to bottom: the slides' order


def global_feature_vector(images: torch.Tensor, method: str = "average") -> torch.Tensor:
    """One vector per image: "flatten" -> [B, C * H * W]; "average" or "max" -> [B, C]."""
    if method == "flatten":
        return flatten_features(images)
    if method in ("average", "max"):
        return global_pool2d(images, method)
    raise ConfigError(
        f"Unknown feature method {method!r}; expected one of {', '.join(FEATURE_METHODS)}."
    )
