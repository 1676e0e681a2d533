"""Image figures: one image's feature maps at a layer (bands as a grid), the first convolution's
kernel bank, importance overlays for grayscale and colour images, and rows of captioned tiles.
"""

from __future__ import annotations

import math
import os

import torch

from cnnlab.explain.plots import new_figure, save_figure

MAX_BANDS = 64


def to_rgb(image: torch.Tensor) -> torch.Tensor:
    """uint8 [C, H, W] -> float [3, H, W] in [0, 1]: gray repeated, colour kept, other band
    counts shown as their mean."""
    x = image.float() / 255.0
    if x.shape[0] == 3:
        return x
    gray = x[:1] if x.shape[0] == 1 else x.mean(dim=0, keepdim=True)
    return gray.expand(3, -1, -1).clone()


def colormap_table(name: str = "jet") -> torch.Tensor:
    """A matplotlib colour map as a [256, 3] float tensor."""
    from matplotlib import colormaps

    table = colormaps[name](torch.linspace(0, 1, 256).numpy())[:, :3]
    return torch.from_numpy(table).float()


def overlay(image: torch.Tensor, heat: torch.Tensor, strength: float = 0.6) -> torch.Tensor:
    """An importance map [H, W] in [0, 1] blended over an image uint8 [C, H, W] -> [3, H, W].

    The blend weight grows with the importance, so unimportant regions show the image as it is
    whatever its bands (gray or colour)."""
    rgb = to_rgb(image)
    heat = heat.float().clamp(0, 1).cpu()
    colour = colormap_table()[(heat * 255).round().long()].permute(2, 0, 1)  # [3, H, W]
    alpha = strength * heat[None]
    return (1 - alpha) * rgb + alpha * colour


def mosaic(tiles: torch.Tensor, columns: int, gap: int = 1, fill: float = float("nan")):
    """[N, H, W] -> one [rows*(H+gap)-gap, columns*(W+gap)-gap] image; gaps hold `fill`."""
    n, height, width = tiles.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    out = torch.full((rows * (height + gap) - gap, columns * (width + gap) - gap), fill)
    for index in range(n):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        out[top : top + height, left : left + width] = tiles[index]
    return out


def band_ranges(activation: torch.Tensor) -> list[list[float]]:
    """[C, h, w] -> per band [min, max], rounded for JSON."""
    flat = activation.float().flatten(1)
    return [
        [round(float(a), 5), round(float(b), 5)]
        for a, b in zip(flat.min(1).values, flat.max(1).values, strict=True)
    ]


def plot_band_grid(
    image: torch.Tensor, activation: torch.Tensor, title: str, path: str | os.PathLike
) -> dict:
    """The input image beside the bands of one layer's output [C, h, w] (a vector [F] is shown
    as one band), each band scaled to its own range. Returns what was shown, for the JSON."""
    bands = activation.float().cpu()
    if bands.dim() == 1:
        bands = bands[None, None, :]
    shown = bands[:MAX_BANDS]
    low = shown.flatten(1).min(1).values[:, None, None]
    high = shown.flatten(1).max(1).values[:, None, None]
    scaled = (shown - low) / (high - low).clamp(min=1e-12)
    columns = math.ceil(math.sqrt(len(shown) * 1.5))
    grid = mosaic(scaled, columns)
    figure = new_figure(11.0, 5.6)
    spec = figure.add_gridspec(1, 2, width_ratios=(1, 3))
    left = figure.add_subplot(spec[0, 0])
    left.imshow(to_rgb(image).permute(1, 2, 0).numpy(), interpolation="nearest")
    left.set_title("input", fontsize=9)
    left.axis("off")
    right = figure.add_subplot(spec[0, 1])
    right.imshow(grid.numpy(), cmap="viridis", interpolation="nearest", vmin=0, vmax=1)
    right.axis("off")
    more = f" (first {len(shown)} of {len(bands)})" if len(bands) > len(shown) else ""
    right.set_title(
        f"{len(bands)} bands of {tuple(bands.shape[1:])}{more}; each scaled to its own range "
        "(dark = its minimum, yellow = its maximum)",
        fontsize=8,
    )
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return {"bands": len(bands), "bands_shown": len(shown), "band_ranges": band_ranges(bands)}


def plot_kernel_bank(weight: torch.Tensor, title: str, path: str | os.PathLike) -> dict:
    """A conv kernel bank [out, in, kh, kw] as images: colour kernels as RGB (each scaled to
    its own range), others one tile per input band on a shared blue-white-red scale."""
    w = weight.detach().float().cpu()
    out_channels, in_channels, kh, kw = w.shape
    figure = new_figure(10.0, 0.6 + 9.4 * min(1.0, max(0.3, in_channels / 8)))
    axes = figure.add_subplot()
    if in_channels == 3:
        low = w.flatten(1).min(1).values[:, None, None, None]
        high = w.flatten(1).max(1).values[:, None, None, None]
        rgb = (w - low) / (high - low).clamp(min=1e-12)  # [O, 3, kh, kw]
        columns = math.ceil(math.sqrt(out_channels * 2))
        channels = [mosaic(rgb[:, band], columns, fill=1.0) for band in range(3)]
        axes.imshow(torch.stack(channels, dim=-1).numpy(), interpolation="nearest")
        note = "RGB, each kernel scaled to its own range"
    else:
        bands = min(in_channels, 8)
        tiles = w[:, :bands].reshape(out_channels * bands, kh, kw)
        limit = float(tiles.abs().max().clamp(min=1e-12))
        grid = mosaic(tiles, bands if bands > 1 else math.ceil(math.sqrt(out_channels * 2)))
        image = axes.imshow(
            grid.numpy(), cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest"
        )
        figure.colorbar(image, ax=axes, fraction=0.03, pad=0.02, label="weight")
        shown = f"first {bands} of {in_channels} input bands" if bands < in_channels else "bands"
        note = (
            f"one row per kernel, one column per input band ({shown})"
            if bands > 1
            else ("shared scale: red positive, blue negative")
        )
    axes.axis("off")
    axes.set_title(
        f"{title}\n{out_channels} kernels of {in_channels}x{kh}x{kw}; {note}", fontsize=9
    )
    figure.tight_layout()
    save_figure(figure, path)
    return {
        "shape": [out_channels, in_channels, kh, kw],
        "min": float(w.min()),
        "max": float(w.max()),
    }


def plot_tile_rows(
    rows: list[tuple[str, list[tuple[torch.Tensor, str]]]],
    title: str,
    path: str | os.PathLike,
    tile_inches: float = 1.15,
) -> None:
    """Rows of captioned images (float [3, H, W] in [0, 1]), each row with a label at its left."""
    columns = max((len(tiles) for _, tiles in rows), default=1)
    label_inches = 1.7
    figure = new_figure(
        label_inches + tile_inches * columns, 0.5 + (tile_inches + 0.25) * max(1, len(rows))
    )
    grid = figure.add_gridspec(
        max(1, len(rows)), columns + 1, width_ratios=(label_inches / tile_inches, *[1] * columns)
    )
    for r, (label, tiles) in enumerate(rows):
        label_axes = figure.add_subplot(grid[r, 0])
        label_axes.axis("off")
        label_axes.text(1.0, 0.5, label, ha="right", va="center", fontsize=7, wrap=True)
        for c, (tile, caption) in enumerate(tiles):
            axes = figure.add_subplot(grid[r, c + 1])
            axes.imshow(tile.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_xlabel(caption, fontsize=5.5, labelpad=1)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.97), h_pad=0.3, w_pad=0.2)
    save_figure(figure, path)
