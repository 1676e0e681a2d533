"""Single image files in and out: decode safely with PIL into uint8 tensors, save as PNG.

The one decoder behind `cnnlab predict` and the folder data sets (decode.py), so both preprocess
identically: EXIF rotation, bands, aspect handling (stretch, pad or centre-crop) and size.
"""

from __future__ import annotations

import io
import math
import os
import stat
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
GRAY_MODES = ("1", "L", "LA", "La", "F", *SIXTEEN_BIT_MODES)
ASPECT_MODES = ("pad", "crop", "stretch")
EXIF_ORIENTATION = 0x0112


class UnreadableImage(DataError):
    """An image file that cannot be used; `reason` is a short phrase for lists of skipped files."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_image_file(
    path: str | os.PathLike,
    channels: int,
    image_size: tuple[int, int],
    *,
    aspect: str = "stretch",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Read an image file as uint8 [channels, H, W] with (H, W) = image_size.

    EXIF orientation is applied; transparency is composited on black; 16-bit grayscale is scaled
    from 0..65535 to 0..255. channels is 1 (grayscale) or 3 (RGB). aspect "stretch" resizes to
    image_size; "pad" keeps the aspect ratio and pads with black; "crop" keeps it and centre-crops.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    pixels = decode_image(path, channels, image_size, aspect=aspect, max_pixels=max_pixels)
    return torch.from_numpy(pixels)


def decode_image(
    path: str | os.PathLike,
    channels: int | None,
    image_size: tuple[int, int] | None,
    *,
    aspect: str = "stretch",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """uint8 [C, H, W]; channels None keeps the file's kind: 1 for grayscale (including colour
    formats whose bands are all equal, as WebP or many JPEGs store gray pictures), else 3.

    image_size None keeps the file's size. Raises UnreadableImage for every unusable file.
    """
    if aspect not in ASPECT_MODES:
        raise ValueError(f"aspect must be one of {', '.join(ASPECT_MODES)}, got {aspect!r}.")
    path = Path(path)
    image = _open_converted(path, channels, image_size, max_pixels)
    if image_size is not None:
        image = fit_to_size(image, image_size, aspect)
    pixels = np.asarray(image, dtype=np.uint8)  # [H, W] or [H, W, 3]
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    elif channels is None and _bands_equal(pixels):
        pixels = pixels[:, :, :1]
    return pixels.transpose(2, 0, 1).copy(order="C")  # [C, H, W], writable


def _open_converted(
    path: Path, channels: int | None, image_size: tuple[int, int] | None, max_pixels: int
) -> Image.Image:
    """Open, check, decode and convert to "L" or "RGB"; every failure becomes UnreadableImage."""
    try:
        status = path.stat()
    except OSError as error:
        raise _unreadable(path, "does not exist or cannot be read", str(error)) from None
    if not stat.S_ISREG(status.st_mode):
        raise _unreadable(path, "is not a file", "")
    if status.st_size == 0:
        raise _unreadable(path, "empty file (0 bytes)", "")
    try:
        with warnings.catch_warnings():
            # The pixel limit below replaces PIL's warning; its hard limit still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UnreadableImage(
                        f"Image file '{path}' is {width}x{height} pixels, more than the limit of "
                        f"{max_pixels:,} pixels; it was not decoded (decompression bomb "
                        "protection). Shrink the image, or raise max_pixels if you trust the file.",
                        f"too large ({width}x{height} pixels, limit {max_pixels:,})",
                    )
                if image_size is not None:
                    _draft(image, image_size)
                if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                    image = ImageOps.exif_transpose(image)  # decodes the pixels
                else:
                    image.load()
                mode = channels and ("L" if channels == 1 else "RGB")
                return convert_mode(image, mode or _natural_mode(image))
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as error:
        raise _unreadable(
            path, "too large to decode safely (decompression bomb)", str(error)
        ) from None
    except Image.UnidentifiedImageError:
        raise _unreadable(path, "not an image (PIL does not recognise its format)", "") from None
    except MemoryError:
        raise
    except Exception as error:  # PIL raises many types for damaged files (OSError, SyntaxError...)
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise _unreadable(path, f"damaged or truncated ({detail})", "") from None


def _unreadable(path: Path, reason: str, detail: str) -> UnreadableImage:
    hints = {
        "not an image": "Use PNG, JPEG, BMP, TIFF, WebP or another common format.",
        "too large": "Shrink the image before using it.",
        "damaged": "Re-export or re-copy the image.",
        "empty file": "Re-copy the image.",
    }
    hint = next((text for key, text in hints.items() if reason.startswith(key)), "Check the path.")
    if reason.startswith("damaged"):
        message = f"Image file '{path}' could not be decoded: {reason}. {hint}"
    elif reason.startswith("not an image"):
        message = f"File '{path}' is {reason}. {hint}"
    elif reason.startswith("does not exist"):
        message = f"Image file '{path}' does not exist or cannot be read ({detail}). {hint}"
    else:
        message = f"Image file '{path}': {reason}{f' ({detail})' if detail else ''}. {hint}"
    return UnreadableImage(message, reason)


def _draft(image: Image.Image, image_size: tuple[int, int]) -> None:
    """Let libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale, keeping at least twice the size
    that is needed (on the shorter side, so an EXIF rotation cannot make it too small)."""
    if image.format != "JPEG":
        return
    width, height = image.size
    factor = 2 * max(image_size) / min(width, height)
    if factor < 0.5:
        image.draft(image.mode, (math.ceil(width * factor), math.ceil(height * factor)))


def _natural_mode(image: Image.Image) -> str:
    return "L" if image.mode in GRAY_MODES else "RGB"


def _bands_equal(pixels: np.ndarray) -> bool:
    """True for [H, W, 3] pixels whose three bands are identical (a gray picture)."""
    return bool(
        (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    )


def convert_mode(image: Image.Image, mode: str) -> Image.Image:
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


def fit_to_size(image: Image.Image, image_size: tuple[int, int], aspect: str) -> Image.Image:
    """Resize to (H, W) = image_size: stretched, padded with black, or centre-cropped.

    PIL's bilinear resize widens its filter when shrinking, i.e. it antialiases.
    """
    height, width = image_size
    source_width, source_height = image.size
    if (source_width, source_height) == (width, height):
        return image
    bilinear = Image.Resampling.BILINEAR
    if aspect == "stretch":
        return image.resize((width, height), bilinear)
    if aspect == "crop":
        scale = max(width / source_width, height / source_height)
        box_width, box_height = width / scale, height / scale
        left, top = (source_width - box_width) / 2, (source_height - box_height) / 2
        return image.resize((width, height), bilinear, box=(left, top, left + box_width,
                                                             top + box_height))  # fmt: skip
    scale = min(width / source_width, height / source_height)
    new_width = min(width, max(1, round(source_width * scale)))
    new_height = min(height, max(1, round(source_height * scale)))
    if (new_width, new_height) != (source_width, source_height):
        image = image.resize((new_width, new_height), bilinear)
    canvas = Image.new(image.mode, (width, height), 0)
    canvas.paste(image, ((width - new_width) // 2, (height - new_height) // 2))
    return canvas


def image_header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(H, W) as displayed (after EXIF rotation) from the file header, or None if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:
        return None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


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
