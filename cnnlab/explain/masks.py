"""Object masks for the object-share check: read from a folder mirroring the images (--masks DIR)
or derived from the images (--masks auto: Otsu's threshold, the side unlike the border, the
largest connected component, small holes filled), an approximation for objects on a plain
background, drawn as outlines so it can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain.galleries import plot_tile_rows, to_rgb

if TYPE_CHECKING:
    from cnnlab.run.records import DatasetRecord

AUTO = "auto"
MAX_MASKED_IMAGES = 1000
HOLE_FRACTION = 0.01  # holes up to this share of the image are filled
AUTO_NOTE = (
    "Masks derived from the images (--masks auto: Otsu's threshold, the side unlike the "
    "border, the largest connected component, small holes filled): an approximation that holds "
    "for objects on a plain background; check the outlines in cam/object-share-masks.png."
)


@dataclass
class ObjectMasks:
    """The masks of the explained images that have one: rows into the images, bool [M, H, W]."""

    rows: list[int]
    masks: torch.Tensor
    source: str  # "folder DIR" or "auto"
    without_object: list[int] = field(default_factory=list)  # auto: rows where none was found

    @property
    def derived(self) -> bool:
        return self.source == AUTO

    def describe(self) -> dict[str, Any]:
        """What summary.json says about the masks."""
        entry: dict[str, Any] = {"masks": self.source, "images_with_masks": len(self.rows)}
        if self.derived:
            entry["images_without_object"] = len(self.without_object)
            entry["note"] = AUTO_NOTE
        return entry


def otsu_threshold(gray: Any) -> float:
    """Otsu's threshold of a grey image (numpy [H, W] in [0, 255]): the level that maximises the
    between-class variance of the 256-level histogram (class 0: levels <= t). The criterion is
    flat across an empty gap between two modes; the middle of that plateau is returned."""
    import numpy as np

    counts = np.bincount(np.round(gray).astype(np.int64).ravel(), minlength=256)[:256]
    levels = np.arange(256)
    below = np.cumsum(counts)[:-1].astype(float)  # pixels <= t, for t = 0..254
    above = counts.sum() - below
    mass = np.cumsum(counts * levels)[:-1].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = mass / below - (mass[-1] + 255.0 * counts[-1] - mass) / above
        between = np.nan_to_num(below * above * gap**2)
    best = int(between.argmax())
    end = best
    while end + 1 < len(between) and between[end + 1] >= between[best] * (1 - 1e-12):
        end += 1
    return (best + end) / 2 + 0.5


def derive_mask(image: torch.Tensor) -> torch.Tensor | None:
    """The object of an image uint8 [C, H, W] on a plain background as bool [H, W], or None when
    no object is found (a constant image, or a threshold that leaves nothing on one side)."""
    import numpy as np
    from scipy import ndimage

    gray = image.float().mean(0).numpy()  # [H, W]
    if gray.max() - gray.min() < 1e-6:
        return None
    threshold = otsu_threshold(gray)
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    bright_border = np.median(border) > threshold
    side = gray <= threshold if bright_border else gray > threshold
    components, count = ndimage.label(side)
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    largest = components == 1 + int(sizes.argmax())
    holes, hole_count = ndimage.label(ndimage.binary_fill_holes(largest) & ~largest)
    if hole_count:
        hole_sizes = np.bincount(holes.ravel())
        small = hole_sizes <= max(1, HOLE_FRACTION * gray.size)
        small[0] = False
        largest |= small[holes]
    if largest.all():
        return None
    return torch.from_numpy(largest)


def derive_masks(images: torch.Tensor, limit: int = MAX_MASKED_IMAGES) -> ObjectMasks:
    """Derived masks of the first `limit` images uint8 [N, C, H, W] that have an object."""
    rows, masks, without = [], [], []
    for row in range(len(images)):
        mask = derive_mask(images[row])
        if mask is None:
            without.append(row)
            continue
        rows.append(row)
        masks.append(mask)
        if len(rows) >= limit:
            break
    height, width = images.shape[2:]
    stacked = torch.stack(masks) if masks else torch.zeros(0, height, width, dtype=torch.bool)
    return ObjectMasks(rows, stacked, AUTO, without)


def mask_path(masks_dir: Path, sample_id: str) -> Path | None:
    """The mask of a sample: the same relative path under masks_dir (any image suffix, .png
    first) for folder: sources, masks_dir/<part>/<index>.png for ids like "test:17"."""
    if ":" in sample_id and "/" not in sample_id:
        part, _, index = sample_id.partition(":")
        candidate = masks_dir / part / f"{index}.png"
        return candidate if candidate.is_file() else None
    relative = Path(sample_id)
    for candidate in (masks_dir / relative, masks_dir / relative.with_suffix(".png")):
        if candidate.is_file():
            return candidate
    return None


def load_masks(masks_dir: str, sample_ids: list[str], record: DatasetRecord) -> ObjectMasks:
    """The masks found under masks_dir, resized as the images were; object = bright (> 127)."""
    from cnnlab.data.images import decode_image

    root = Path(masks_dir)
    if not root.is_dir():
        raise CnnlabError(f"--masks '{root}' is not a folder of mask images (or 'auto').")
    height, width = record.image_size
    rows, masks = [], []
    for row, sample_id in enumerate(sample_ids):
        path = mask_path(root, sample_id)
        if path is None:
            continue
        pixels = decode_image(path, 1, (height, width), aspect=record.aspect)
        masks.append(torch.from_numpy(pixels)[0] > 127)
        rows.append(row)
        if len(rows) >= MAX_MASKED_IMAGES:
            break
    if not rows:
        example = mask_path.__doc__.split(":", 1)[1].strip()
        raise CnnlabError(
            f"No mask was found in '{root}' for the {len(sample_ids)} images explained (the first "
            f"is {sample_ids[0]!r}). Masks mirror the images: {example} Or derive them: --masks "
            "auto."
        )
    return ObjectMasks(rows, torch.stack(masks), f"folder {root}")


def object_masks(
    masks: str, images: torch.Tensor, sample_ids: list[str], record: DatasetRecord
) -> ObjectMasks:
    """--masks auto derives them from the images uint8 [N, C, H, W]; a folder is read."""
    if masks == AUTO:
        return derive_masks(images)
    return load_masks(masks, sample_ids, record)


def outline(mask: torch.Tensor) -> torch.Tensor:
    """The object's pixels bool [H, W] that touch the background (4-neighbours) or the edge."""
    padded = torch.nn.functional.pad(mask[None, None].float(), (1, 1, 1, 1))[0, 0]
    inner = (
        padded[:-2, 1:-1].bool()
        & padded[2:, 1:-1].bool()
        & padded[1:-1, :-2].bool()
        & padded[1:-1, 2:].bool()
    )
    return mask & ~inner


def plot_mask_outlines(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    found: ObjectMasks,
    path: Path,
    per_class: int = 8,
) -> None:
    """A gallery of images uint8 [N, C, H, W] with their masks' outlines in red, a row per class
    (the first 10 classes), and a row of images where no object was found."""
    where = dict(zip(found.rows, found.masks, strict=True))
    rows = []
    for c, name in enumerate(class_names[:10]):
        members = [r for r in found.rows if int(labels[r]) == c][:per_class]
        tiles = []
        for r in members:
            rgb = to_rgb(images[r])
            rgb[:, outline(where[r])] = torch.tensor([1.0, 0.0, 0.0])[:, None]
            tiles.append((rgb, f"{float(where[r].float().mean()):.2f}"))
        if tiles:
            rows.append((name, tiles))
    if found.without_object:
        missing = [(to_rgb(images[r]), "none") for r in found.without_object[:per_class]]
        rows.append(("no object found", missing))
    plot_tile_rows(
        rows,
        f"Masks derived from the images (an approximation), outlined in red; caption: the "
        f"object's area ({len(found.rows)} images with an object, "
        f"{len(found.without_object)} without)",
        path,
    )
