"""Image figures: one image's feature maps at a layer (bands as a grid), the first convolution's
kernel bank, importance overlays for grayscale and colour images, and rows of captioned tiles.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

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


HEAT_COLOURS = "jet"  # overlay()'s colour map, and its colour bar's


@functools.cache
def colormap_table(name: str = HEAT_COLOURS) -> torch.Tensor:
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
    """The input image beside the bands of one layer's output [C, h, w], each band scaled to its
    own range, or beside a bar per unit for a vector [F]. Returns what was shown, for the JSON."""
    bands = activation.float().cpu()
    figure = new_figure(11.0, 5.6)
    left = figure.add_axes((0.01, 0.1, 0.25, 0.75))
    left.imshow(to_rgb(image).permute(1, 2, 0).numpy(), interpolation="nearest")
    left.set_title("input", fontsize=9)
    left.axis("off")
    figure.suptitle(title, fontsize=10)
    if bands.dim() == 1:
        axes = figure.add_axes((0.33, 0.12, 0.64, 0.74))
        axes.bar(range(len(bands)), bands.numpy(), width=0.9, color="tab:blue")
        axes.set_xlabel("unit")
        axes.set_ylabel("activation")
        axes.set_title(f"{len(bands)} units", fontsize=8)
        axes.grid(alpha=0.3, axis="y")
        save_figure(figure, path)
        return {"units": len(bands), "range": [float(bands.min()), float(bands.max())]}
    if bands.dim() == 2:
        bands = bands[None]
    shown = bands[:MAX_BANDS]
    low = shown.flatten(1).min(1).values[:, None, None]
    high = shown.flatten(1).max(1).values[:, None, None]
    scaled = (shown - low) / (high - low).clamp(min=1e-12)
    columns = math.ceil(math.sqrt(len(shown) * 1.5))
    grid = mosaic(scaled, columns)
    right = figure.add_axes((0.3, 0.02, 0.69, 0.86))
    right.imshow(grid.numpy(), cmap="viridis", interpolation="nearest", vmin=0, vmax=1)
    right.axis("off")
    more = f" (first {len(shown)} of {len(bands)})" if len(bands) > len(shown) else ""
    right.set_title(
        f"{len(bands)} bands of {tuple(bands.shape[1:])}{more}; each scaled to its own range "
        "(dark = its minimum, yellow = its maximum)",
        fontsize=8,
    )
    save_figure(figure, path)
    return {"bands": len(bands), "bands_shown": len(shown), "band_ranges": band_ranges(bands)}


def plot_kernel_bank(weight: torch.Tensor, title: str, path: str | os.PathLike) -> dict:
    """A conv kernel bank [out, in, kh, kw] as images: colour kernels as RGB (each scaled to
    its own range), others one tile per input band on a shared blue-white-red scale."""
    w = weight.detach().float().cpu()
    out_channels, in_channels, kh, kw = w.shape
    if in_channels == 3:
        low = w.flatten(1).min(1).values[:, None, None, None]
        high = w.flatten(1).max(1).values[:, None, None, None]
        rgb = (w - low) / (high - low).clamp(min=1e-12)  # [O, 3, kh, kw]
        columns = math.ceil(math.sqrt(out_channels * 2))
        grid = torch.stack([mosaic(rgb[:, b], columns, fill=1.0) for b in range(3)], dim=-1)
        note = "RGB, each kernel scaled to its own range"
    else:
        bands = min(in_channels, 8)
        tiles = w[:, :bands].reshape(out_channels * bands, kh, kw)
        grid = mosaic(tiles, bands if bands > 1 else math.ceil(math.sqrt(out_channels * 2)))
        if bands > 1:
            shown = f"first {bands} of {in_channels}" if bands < in_channels else "all"
            note = f"a row per kernel, a column per input band ({shown}); red +, blue -"
        else:
            note = "shared scale: red positive, blue negative"
    width = min(12.0, max(4.0, 0.22 * grid.shape[1]))
    height = width * grid.shape[0] / grid.shape[1]
    figure = new_figure(width + 1.4, height + 0.9)
    axes = figure.add_axes((0.03, 0.03, width / (width + 1.4), height / (height + 0.9)))
    if in_channels == 3:
        axes.imshow(grid.numpy(), interpolation="nearest")
    else:
        limit = float(w.abs().max().clamp(min=1e-12))
        image = axes.imshow(
            grid.numpy(), cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest"
        )
        figure.colorbar(image, ax=axes, fraction=0.05, pad=0.03, label="weight")
    axes.axis("off")
    figure.suptitle(
        f"{title}\n{out_channels} kernels of {in_channels}x{kh}x{kw}; {note}", fontsize=9
    )
    save_figure(figure, path)
    return {
        "shape": [out_channels, in_channels, kh, kw],
        "min": float(w.min()),
        "max": float(w.max()),
    }


CHAR_WIDTH = 0.65  # an upper bound on a DejaVu Sans character's width, in font sizes (em)
CAPTION_POINTS, LABEL_POINTS = 6.5, 7.5  # font sizes of the captions and row labels


def shorten_name(name: str, max_chars: int) -> str:
    """`name` in at most max_chars characters: the middle of a longer one becomes "…", keeping its
    start, its end and its extension: "patient_0012_slide_07_cell_0345.png", 24 ->
    "patient_00…cell_0345.png"."""
    if len(name) <= max_chars:
        return name
    stem, dot, extension = name.rpartition(".")
    extension = dot + extension
    if not stem or len(extension) > 6 or " " in extension or max_chars - len(extension) < 3:
        stem, extension = name, ""  # no extension worth keeping, or no room beside it
    room = max(0, max_chars - len(extension) - 1)
    head = (room + 1) // 2
    tail = room - head
    return stem[:head] + "…" + (stem[len(stem) - tail :] if tail else "") + extension


def fitting_chars(pixels: float, points: float, dpi: float = 100) -> int:
    """How many characters of a `points`-sized font surely fit in `pixels`."""
    return max(4, int(pixels * 72 / dpi / (points * CHAR_WIDTH)))


def shorten_lines(text: str, max_chars: int) -> str:
    return "\n".join(shorten_name(line, max_chars) for line in text.split("\n"))


def plot_tile_rows(
    rows: list[tuple[str, list[tuple]]],
    title: str,
    path: str | os.PathLike,
    tile_pixels: int = 96,
    colour_scale: str | None = None,
) -> Any:
    """Rows of captioned images, each row labelled at its left. A tile is (image float
    [3, H, W] in [0, 1], caption) or (image, caption, caption colour). The tiles are laid into one
    picture (enlarged by whole factors, nearest neighbour) and drawn once, which keeps galleries
    of a hundred images fast to render. Each caption line and row label is shortened
    (shorten_name) to fit its tile or margin. `colour_scale` labels a colour bar of the heat-map
    colours, for tiles that are overlays. Returns the matplotlib Figure written."""
    tiles = [tile for _, row in rows for tile in row]
    if not tiles:
        tiles, rows = [(torch.ones(3, 8, 8), "")], [("(nothing to show)", [])]
    height, width = tiles[0][0].shape[1:]
    factor = max(1, round(tile_pixels / max(height, width)))
    tile_h, tile_w = height * factor, width * factor
    lines = max(str(tile[1]).count("\n") + 1 for tile in tiles)
    gap, caption_h, label_w, title_h = 6, 4 + 11 * lines, 150, 36
    bar_w = 100 if colour_scale else 0
    canvas, places = _lay_out(rows, factor, tile_h, tile_w, caption_h, gap)
    total_w, total_h = label_w + canvas.shape[1] + bar_w, title_h + canvas.shape[0]
    figure = new_figure(total_w / 100, total_h / 100, dpi=100)
    axes = figure.add_axes(
        (label_w / total_w, 0, canvas.shape[1] / total_w, canvas.shape[0] / total_h)
    )
    axes.imshow(canvas.numpy(), interpolation="nearest")
    axes.axis("off")
    caption_chars = fitting_chars(tile_w + gap - 2, CAPTION_POINTS)
    for top, left, tile in places:
        axes.text(
            left + tile_w / 2,
            top + tile_h + 2,
            shorten_lines(str(tile[1]), caption_chars),
            ha="center",
            va="top",
            fontsize=CAPTION_POINTS,
            color=tile[2] if len(tile) > 2 else "black",
        )
    label_chars = fitting_chars(label_w - 12, LABEL_POINTS)
    for r, (label, _) in enumerate(rows):
        axes.text(
            -8,
            r * (tile_h + caption_h + gap) + tile_h / 2,
            shorten_lines(label, label_chars),
            ha="right",
            va="center",
            fontsize=LABEL_POINTS,
            clip_on=False,
        )
    if colour_scale:
        _colour_bar(
            figure, colour_scale, (total_w - bar_w + 12) / total_w, canvas.shape[0] / total_h
        )
    figure.text(0.5, 1 - 8 / total_h, title, ha="center", va="top", fontsize=9, wrap=True)
    save_figure(figure, path)
    return figure


def _lay_out(
    rows: list[tuple[str, list[tuple]]], factor: int, tile_h: int, tile_w: int, caption_h: int,
    gap: int,
) -> tuple[torch.Tensor, list[tuple[int, int, tuple]]]:  # fmt: skip
    """The tiles, enlarged, on one white canvas [height, width, 3]; where each one went."""
    columns = max(1, max(len(row) for _, row in rows))
    canvas = torch.ones(len(rows) * (tile_h + caption_h + gap), columns * (tile_w + gap), 3)
    places = []
    for r, (_, row) in enumerate(rows):
        for c, tile in enumerate(row):
            image = tile[0].clamp(0, 1).repeat_interleave(factor, 1).repeat_interleave(factor, 2)
            top, left = r * (tile_h + caption_h + gap), c * (tile_w + gap)
            canvas[top : top + image.shape[1], left : left + image.shape[2]] = image.permute(
                1, 2, 0
            )
            places.append((top, left, tile))
    return canvas, places


def _colour_bar(figure: Any, label: str, left: float, height: float) -> None:
    """A vertical colour bar of overlay()'s colour map over [0, 1], right of the tiles."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = figure.add_axes((left, 0.05 * height, 12 / (figure.get_figwidth() * 100), 0.9 * height))
    scale = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=HEAT_COLOURS)
    colorbar = figure.colorbar(scale, cax=bar)
    colorbar.set_label(label, fontsize=7)
    colorbar.ax.tick_params(labelsize=6)
