"""Augmentation of whole batches of tensors on their device, never per-image PIL work.

Flips, translation (random crop with padding), rotation and scaling, brightness and contrast,
Gaussian noise and random erasing. Every random number comes from a generator seeded by
(seed, epoch, batch), so a run resumed mid-epoch sees exactly the batches an uninterrupted one does.
The settings are defined in cnnlab/specs/augmentation.py, each data set's defaults in sources.py.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.loader import device_constant
from cnnlab.data.sources import default_augmentation
from cnnlab.specs.augmentation import AUGMENTATION_FIELDS, ERASE_AREA, ERASE_ASPECT, Augmentation

__all__ = [  # Augmentation and default_augmentation live where they are defined once
    "AUGMENTATION_FIELDS",
    "Augmentation",
    "augment_batch",
    "augmented_batches",
    "batch_seed",
    "default_augmentation",
    "resolve_augmentation",
]


def resolve_augmentation(
    overrides: Mapping[str, Any], source: str, image_size: tuple[int, int], use_defaults: bool
) -> Augmentation:
    """The data set's defaults (or none), with every override that is not None applied."""
    base = default_augmentation(source, image_size) if use_defaults else Augmentation()
    given = {k: overrides[k] for k in AUGMENTATION_FIELDS if overrides.get(k) is not None}
    return replace(base, **given)


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """A 63-bit seed that depends on nothing but (seed, epoch, batch)."""
    digest = hashlib.sha256(f"augment:{seed}:{epoch}:{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def augmented_batches(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    augmentation: Augmentation,
    fill: tuple[float, ...],
    seed: int,
    epoch: int,
    start_batch: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augment each (images, labels) batch; batch i of the epoch always gets the same randomness."""
    for index, (images, labels) in enumerate(batches, start=start_batch):
        generator = torch.Generator(device=images.device)
        generator.manual_seed(batch_seed(seed, epoch, index))
        yield augment_batch(images, augmentation, generator, fill), labels


def augment_batch(
    images: torch.Tensor,
    augmentation: Augmentation,
    generator: torch.Generator,
    fill: tuple[float, ...] = (0.0,),
) -> torch.Tensor:
    """uint8 or float [B, C, H, W] on 0..255 -> float32 [B, C, H, W] on 0..255.

    `fill` is the data set's mean (per band, on 0..1, as normalisation uses it): erased rectangles
    show it, which makes them zero after normalisation. Pixels a shift, rotation or zoom uncovers
    show what `augmentation.pad_fill` says: black (zero), `fill` (mean) or the nearest edge pixel.
    """
    x = images.float()  # [B, C, H, W]
    batch, bands, height, width = x.shape
    fill_value = (
        device_constant(tuple(fill), torch.float32, x.device)  # no per-batch host copy
        .mul(255)
        .view(1, -1, 1, 1)
        .expand(1, bands, 1, 1)
    )
    pad_value = {"zero": torch.zeros_like(fill_value), "mean": fill_value, "edge": None}[
        augmentation.pad_fill
    ]

    def uniform(low: float, high: float) -> torch.Tensor:  # [B]
        return low + (high - low) * torch.rand(batch, generator=generator, device=x.device)

    def chosen(probability: float) -> torch.Tensor:  # [B, 1, 1, 1], True with `probability`
        return (uniform(0, 1) < probability).view(-1, 1, 1, 1)

    a = augmentation
    if a.hflip:
        x = torch.where(chosen(a.hflip), x.flip(3), x)
    if a.vflip:
        x = torch.where(chosen(a.vflip), x.flip(2), x)
    if a.crop_padding:
        x = _translate(x, a.crop_padding, generator, pad_value)
    if a.rotate or a.scale:
        angle = uniform(-a.rotate, a.rotate) * (math.pi / 180)
        zoom = uniform(1 - a.scale, 1 + a.scale)
        x = _rotate_and_zoom(x, angle, zoom, pad_value)
    if a.brightness:
        x = x * uniform(1 - a.brightness, 1 + a.brightness).view(-1, 1, 1, 1)
    if a.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * uniform(1 - a.contrast, 1 + a.contrast).view(-1, 1, 1, 1) + mean
    if a.noise:
        x = x + (a.noise * 255) * torch.randn(x.shape, generator=generator, device=x.device)
    if a.erase:
        x = torch.where(_erase_mask(x, a.erase, uniform, chosen), fill_value, x)
    return x.clamp(0, 255)


def _translate(
    x: torch.Tensor, padding: int, generator: torch.Generator, fill_value: torch.Tensor | None
) -> torch.Tensor:
    """Shift each image by whole pixels in [-padding, padding], exposing fill_value (None: the
    edge pixels repeated)."""
    batch, bands, height, width = x.shape
    shifts = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator, device=x.device)
    if fill_value is None:
        padded = F.pad(x, (padding,) * 4, mode="replicate")  # [B, C, H + 2p, W + 2p]
    else:
        padded = F.pad(x - fill_value, (padding,) * 4) + fill_value
    rows = shifts[0].view(-1, 1) + torch.arange(height, device=x.device)  # [B, H]
    cols = shifts[1].view(-1, 1) + torch.arange(width, device=x.device)  # [B, W]
    rows = rows.view(batch, 1, height, 1).expand(batch, bands, height, width + 2 * padding)
    x = padded.gather(2, rows)  # [B, C, H, W + 2p]
    return x.gather(3, cols.view(batch, 1, 1, width).expand(batch, bands, height, width))


def _rotate_and_zoom(
    x: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, fill_value: torch.Tensor | None
) -> torch.Tensor:
    """Rotate by angle (radians) and zoom about the centre, bilinear; outside shows fill_value
    (None: the nearest edge pixel)."""
    batch, _, height, width = x.shape
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid works in coordinates normalised to [-1, 1] on each axis, so a rotation of
    # pixels needs the aspect ratio on its off-diagonal terms.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * height / width, torch.zeros_like(cos)], dim=1),
            torch.stack([sin * width / height, cos, torch.zeros_like(cos)], dim=1),
        ],
        dim=1,
    )  # [B, 2, 3], output -> input coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if fill_value is None:
        return F.grid_sample(x, grid, "bilinear", padding_mode="border", align_corners=False)
    moved = F.grid_sample(x - fill_value, grid, mode="bilinear", align_corners=False)
    return moved + fill_value


def _erase_mask(x: torch.Tensor, probability: float, uniform, chosen) -> torch.Tensor:
    """[B, 1, H, W]: one random rectangle per chosen image."""
    batch, _, height, width = x.shape
    area = uniform(*ERASE_AREA) * height * width
    aspect = torch.exp(uniform(math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])))
    box_height = torch.sqrt(area * aspect).round().clamp(1, height)
    box_width = torch.sqrt(area / aspect).round().clamp(1, width)
    top = (uniform(0, 1) * (height - box_height + 1)).floor()
    left = (uniform(0, 1) * (width - box_width + 1)).floor()
    ys = torch.arange(height, device=x.device).view(1, -1)
    xs = torch.arange(width, device=x.device).view(1, -1)
    inside_y = (ys >= top.view(-1, 1)) & (ys < (top + box_height).view(-1, 1))  # [B, H]
    inside_x = (xs >= left.view(-1, 1)) & (xs < (left + box_width).view(-1, 1))  # [B, W]
    mask = inside_y.view(batch, 1, height, 1) & inside_x.view(batch, 1, 1, width)
    return mask & chosen(probability)
