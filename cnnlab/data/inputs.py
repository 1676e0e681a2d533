"""Images handed over in memory (PIL images, numpy arrays, tensors) or as files, brought to a run's
bands and size exactly as its training images were (the decoder of cnnlab.data.images).

Conventions: numpy arrays are [H, W] or [H, W, C] (as PIL, imageio and scikit-image give them),
tensors [H, W] or [C, H, W] (as torchvision gives them); a 4-D array or tensor is a batch of those.
uint8 values are taken as they are, uint16 scaled from 0..65535, floats must lie in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab.data.images import convert_mode, fit_to_size, load_image_file
from cnnlab.errors import DataError

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def prepare_images(
    images: ImageInput | Iterable[ImageInput],
    channels: int,
    image_size: tuple[int, int],
    aspect: str = "stretch",
) -> torch.Tensor:
    """uint8 [N, channels, H, W] for one image, a batch (4-D array or tensor) or a list of them."""
    items = _as_items(images)
    if not items:
        raise DataError("No images were given to predict.")
    mode = "L" if channels == 1 else "RGB"
    out = []
    for index, item in enumerate(items):
        if isinstance(item, str | os.PathLike):
            out.append(load_image_file(item, channels, image_size, aspect=aspect))
            continue
        picture = item if isinstance(item, Image.Image) else _to_pil(item, index)
        pixels = np.asarray(fit_to_size(convert_mode(picture, mode), image_size, aspect))
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        out.append(torch.from_numpy(pixels.transpose(2, 0, 1).copy()))
    return torch.stack(out)


def _as_items(images: Any) -> list[Any]:
    if isinstance(images, str | os.PathLike | Image.Image):
        return [images]
    if isinstance(images, np.ndarray | torch.Tensor):
        return list(images) if images.ndim == 4 else [images]
    return list(images)


def _to_pil(item: Any, index: int) -> Image.Image:
    """A PIL image of an [H, W] / [H, W, C] array or an [H, W] / [C, H, W] tensor."""
    if isinstance(item, torch.Tensor):
        array = item.detach().cpu().numpy()
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)  # [C, H, W] -> [H, W, C]
    elif isinstance(item, np.ndarray):
        array = item
    else:
        raise DataError(
            f"Image {index} is a {type(item).__name__}; give file paths, PIL images, numpy arrays "
            "or torch tensors."
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise DataError(
            f"Image {index} has shape {tuple(item.shape)}; expected [H, W] or [H, W, C] for a "
            "numpy array and [H, W] or [C, H, W] for a tensor, with C = 1, 3 or 4."
        )
    return Image.fromarray(_to_uint8(array, index))


def _to_uint8(array: np.ndarray, index: int) -> np.ndarray:
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        return np.floor(array.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0.0 and high <= 1.0):
            raise DataError(
                f"Image {index} holds floats from {low:g} to {high:g}; float images must lie in "
                "[0, 1] (divide by 255 first, or give uint8)."
            )
        return np.floor(array.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    raise DataError(
        f"Image {index} has dtype {array.dtype}; give uint8, uint16 or floats in [0, 1]."
    )
