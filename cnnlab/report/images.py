"""Images inlined into the report as data URIs: the PNGs other commands wrote, thumbnails of a
split's images (uint8 [N, C, H, W]) and the class colours every chart shares."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import torch

THUMBNAIL_SIDE = 28  # px: small enough that 10,000 hover thumbnails stay a few megabytes


def file_data_uri(path: Path) -> str:
    """A PNG/JPEG file as a data: URI, so the report needs no file beside it."""
    kind = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _as_pil(image: torch.Tensor):  # [C, H, W] uint8
    from PIL import Image

    if image.shape[0] == 1:
        return Image.fromarray(image[0].numpy(), mode="L")
    return Image.fromarray(image[:3].permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def tensor_data_uri(image: torch.Tensor) -> str:
    """One uint8 [C, H, W] image as a PNG data URI, at its own size."""
    buffer = io.BytesIO()
    _as_pil(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_uris(images: torch.Tensor, side: int = THUMBNAIL_SIDE) -> list[str]:
    """One small PNG data URI per image of `images` [N, C, H, W] uint8, longest side `side` px.

    Images already smaller than `side` (the 8x8 digits) stay at their size; the page scales them
    up with `image-rendering: pixelated`.
    """
    uris = []
    for image in images:
        picture = _as_pil(image)
        if max(picture.size) > side:
            picture.thumbnail((side, side))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", optimize=True)
        uris.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return uris


def class_colours_hex(num_classes: int) -> list[str]:
    """The colours explain's PNGs use for each class, as #rrggbb, for every chart of the report."""
    from cnnlab.explain.plots import class_colours

    return [
        "#" + "".join(f"{round(channel * 255):02x}" for channel in colour[:3])
        for colour in class_colours(num_classes)
    ]
