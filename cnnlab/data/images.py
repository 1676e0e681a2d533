"""Single image files in and out: decode safely with PIL into uint8 [C, H, W] tensors, save as PNG.

This is the I/O edge for `cnnlab predict` and for tools that write images (STYLE.md rule 10).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from cnnlab.errors import DataError
from cnnlab.fileio import atomic_write_bytes

DEFAULT_MAX_PIXELS = 50_000_000  # refuse larger images before decoding (decompression bombs)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def load_image_file(
    path: str | os.PathLike,
    channels: int,
    image_size: tuple[int, int],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Read an image file as uint8 [channels, H, W], resized to image_size = (H, W) if needed.

    EXIF orientation is applied; transparency is composited on black; 16-bit grayscale is scaled
    from 0..65535 to 0..255. channels is 1 (grayscale) or 3 (RGB).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Image file '{path}' does not exist. Check the path.")
    try:
        with warnings.catch_warnings():
            # The pixel limit below replaces PIL's warning; its hard limit still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixel_count(image, path, max_pixels)
                image = ImageOps.exif_transpose(image)  # decodes the pixels
                image = _to_mode(image, "L" if channels == 1 else "RGB")
    except Image.DecompressionBombError as error:
        raise DataError(
            f"Image file '{path}' is too large to decode safely ({error}). "
            "Shrink the image before using it."
        ) from None
    except Image.UnidentifiedImageError:
        raise DataError(
            f"File '{path}' is not an image that cnnlab can read (PIL does not recognise its "
            "format). Use PNG, JPEG, BMP, TIFF or another common format."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(
            f"Image file '{path}' could not be decoded ({error}); it is probably truncated or "
            "damaged. Re-export or re-copy the image."
        ) from None
    height, width = image_size
    if image.size != (width, height):
        # PIL's bilinear resize widens its filter when shrinking, i.e. it antialiases.
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))  # [H, W] or [H, W, 3]
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(-1)
    return pixels.permute(2, 0, 1).contiguous()  # [C, H, W]


def _check_pixel_count(image: Image.Image, path: Path, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise DataError(
            f"Image file '{path}' is {width}x{height} pixels, more than the limit of "
            f"{max_pixels:,} pixels; it was not decoded (decompression bomb protection). "
            "Shrink the image, or raise max_pixels if you trust the file."
        )


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to "L" or "RGB": 16-bit scaled by its full range, transparency on black."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        gray = np.floor(np.clip(values, 0, 65535) * 255 / 65535 + 0.5).astype(np.uint8)
        image = Image.fromarray(gray)  # mode "L"
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba).convert("RGB")
    return image if image.mode == mode else image.convert(mode)


def save_image_file(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a uint8 [C, H, W] tensor (C = 1, 3 or 4) as a PNG file, atomically."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"save_image_file expects a uint8 tensor [C, H, W] with C in 1, 3 or 4, got dtype "
            f"{image.dtype} and shape {tuple(image.shape)}."
        )
    pixels = image.detach().cpu().permute(1, 2, 0).numpy()  # [H, W, C]
    if pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG")  # L, RGB or RGBA
    atomic_write_bytes(path, buffer.getvalue())
