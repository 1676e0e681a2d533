"""`cnnlab ops IMAGE`: run the seed slides' operations (LN, CO, BN, RL, PO, ...) on your own image
and write one PNG per step showing every band with its value range (seed slides 000 and 002).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.commands import COMMANDS, common
from cnnlab.errors import CnnlabError, ConfigError, UnknownNameError
from cnnlab.specs.operations import DEFAULT_PIPELINE, NAMED_KERNELS, STEP_KINDS, parse_size

if TYPE_CHECKING:
    from cnnlab.ops.pipeline import KernelBankChoice, StepResult

DEFAULT_MAX_SIDE = 512
MAX_RANDOM_KERNELS = 64
MAX_COLOUR_BARS = 8
MAX_ANNOTATED_PIXELS = 100  # bands this small get their values printed in each pixel
GREY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")

EPILOG = """examples:
  cnnlab ops photo.jpg                                  # LN,CO,BN,RL,PO with sobel-x, sobel-y
  cnnlab ops photo.jpg --kernels outline,sharpen,gaussian-blur --pipeline CO,RL --out ops-photo
  cnnlab ops photo.jpg --random-bank 8 --seed 3 --kernel-size 5x5 --pipeline LN,CO,BN,RL,PO
  cnnlab ops cell.png --pipeline "CO,DN:size=25x5,RL,PO:mode=min:size=2:stride=2"
  cnnlab ops a.png b.png c.png --pipeline LN,CO,BN:stats=pixel,RL   # BN over a set of images

pipeline steps (comma-separated; options as CODE:name=value:name=value; shown with defaults):
{steps}
  Sizes are WIDTHxHEIGHT like the slides' w x h (DN's default 25x5 is 25 wide, 5 high) or one
  number for a square. BN:stats=auto uses the slides' per-pixel statistics over the images when
  several images are given (with n images every result lies within +-(n-1)/sqrt(n), so a few
  images give noisy maps), and per-band statistics over the pixels of one image otherwise. Every
  image is resized to the size of the first one (or --size); PNGs go to OUT/IMAGE/NN-STEP.png.

named kernels (--kernels) [seed slides showing them]:
{kernels}

Each PNG shows every band of one image after one step, with its minimum and maximum. Bands with
only non-negative values are grey (black = min, white = max); bands with negative values use
blue (negative) - white (0) - red (positive), so after sobel-x, red marks dark-to-bright
transitions from left to right and blue the opposite; ReLU then keeps only the red.
"""


def register(subparsers: Any) -> None:
    steps = "\n".join(
        f"  {STEP_KINDS.get(c).usage():<32} {STEP_KINDS.get(c).title}" for c in STEP_KINDS
    )
    kernels = "\n".join(
        f"  {k.name:<14} {k.description} [{k.slide}]"
        for k in sorted(NAMED_KERNELS, key=lambda k: k.name)
    )
    parser = subparsers.add_parser(
        "ops",
        help=COMMANDS["ops"],
        description="Apply a pipeline of the seed slides' operations (linear, divisive and batch "
        "normalisation, convolution with a named or random kernel bank, activation, pooling) to "
        "image files, and write one PNG per step and image showing every band.",
        epilog=EPILOG.format(steps=steps, kernels=kernels),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    add(
        "--pipeline",
        metavar="SPEC",
        default=DEFAULT_PIPELINE,
        help=f"steps to apply (default: {DEFAULT_PIPELINE})",
    )
    bank = parser.add_mutually_exclusive_group()
    bank.add_argument(
        "--kernels",
        metavar="NAMES",
        default="sobel-x,sobel-y",
        help="named kernels for CO (default: sobel-x,sobel-y)",
    )
    bank.add_argument(
        "--random-bank",
        metavar="N",
        type=int,
        default=0,
        help="use N seeded random kernels for CO instead",
    )
    add("--seed", type=int, default=0, help="seed of the random bank (default: 0)")
    add("--kernel-size", metavar="WxH", default="5x5", help="random kernel size (default: 5x5)")
    add(
        "--size",
        metavar="WxH|N",
        help="resize to WxH, or to N pixels on the longer side keeping "
        "the aspect ratio (default: the first image's size, at most --max-side)",
    )
    add(
        "--max-side",
        metavar="N",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help=f"shrink larger images to this longer side (default: {DEFAULT_MAX_SIDE})",
    )
    add("--grey", action="store_true", help="read the images as one grey band")
    add("--out", metavar="DIR", default="ops", help="folder for the PNGs (default: ./ops)")
    common.add_json_flag(parser, "what was written")
    parser.set_defaults(handler=run_ops_command)


def run_ops_command(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.data.images import load_image_file
    from cnnlab.ops.pipeline import parse_pipeline, run_pipeline

    steps = parse_pipeline(args.pipeline)  # errors before any image is read
    bank = _bank_choice(args)
    paths = [Path(p) for p in args.images]
    channels = 1 if args.grey else _channels(paths)
    size, note = _target_size(paths[0], args.size, args.max_side)
    batch = torch.stack([load_image_file(p, channels, size) for p in paths]).float()
    results = run_pipeline(batch, steps, bank)  # [B, C, H, W] per step
    stems = _unique_stems(paths)
    written = []
    for number, result in enumerate(results):
        files = []
        for j, stem in enumerate(stems):
            path = Path(args.out) / stem / f"{number:02d}-{_file_label(result.step)}.png"
            _write_figure(result, j, number, len(results) - 1, str(paths[j]), path)
            files.append(str(path))
        written.append(_summary(result, files))
    if args.json:
        print(json.dumps({"size": list(size), "note": note, "steps": written}, indent=2))
        return 0
    if note:
        print(note)
    for number, row in enumerate(written):
        shape = "x".join(str(s) for s in row["shape"][1:])
        print(
            f"{number:02d} {row['step']:<8} {shape:>13} (bands x H x W)  {', '.join(row['files'])}"
        )
    return 0


def _bank_choice(args: argparse.Namespace) -> KernelBankChoice:
    from cnnlab.ops import KERNELS
    from cnnlab.ops.pipeline import KernelBankChoice

    if args.random_bank:
        if not 1 <= args.random_bank <= MAX_RANDOM_KERNELS:
            raise ConfigError(
                f"--random-bank {args.random_bank} is out of range; use 1 to "
                f"{MAX_RANDOM_KERNELS} kernels (each becomes a panel in the figures)."
            )
        try:
            size = parse_size(args.kernel_size)
        except ValueError as error:
            raise ConfigError(f"--kernel-size: {error}.") from None
        return KernelBankChoice((), args.random_bank, args.seed, size)
    names = tuple(n.strip() for n in args.kernels.split(",") if n.strip())
    for name in names:
        try:
            KERNELS.get(name)
        except UnknownNameError as error:
            raise ConfigError(f"--kernels: {error}") from None
    if not names:
        raise ConfigError("--kernels is empty; give names such as sobel-x,sobel-y.")
    return KernelBankChoice(names)


def _image_header(path: Path) -> tuple[str, tuple[int, int]]:
    """(PIL mode, (height, width) after EXIF rotation), reading only the file header."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
            return image.mode, (height, width)
    except Exception:  # let the loader say precisely what is wrong with the file
        from cnnlab.data.images import load_image_file

        load_image_file(path, 1, (1, 1))
        raise


def _channels(paths: list[Path]) -> int:
    return 1 if all(_image_header(p)[0] in GREY_MODES for p in paths) else 3


def _target_size(path: Path, size: str | None, max_side: int) -> tuple[tuple[int, int], str]:
    if max_side < 1:
        raise ConfigError(f"--max-side must be at least 1; got {max_side}.")
    height, width = _image_header(path)[1]
    if size:
        try:
            if "x" in size.lower():
                return parse_size(size), ""
            longest = parse_size(size)[0]
        except ValueError as error:
            raise ConfigError(f"--size: {error}.") from None
    elif max(height, width) > max_side:
        longest = max_side
    else:
        return (height, width), ""
    scale = longest / max(height, width)
    target = (max(1, round(height * scale)), max(1, round(width * scale)))
    return target, f"{path.name} is {width}x{height}; resized to {target[1]}x{target[0]} (WxH)."


def _unique_stems(paths: list[Path]) -> list[str]:
    """Output folder names: the file stems, with the parent folder where stems repeat
    (test/cat/0001.jpg and test/ship/0001.jpg -> cat-0001, ship-0001), then a counter."""
    stems = [p.stem for p in paths]
    repeated = {s for s in stems if stems.count(s) > 1}
    named = [
        f"{p.parent.name}-{p.stem}" if p.stem in repeated and p.parent.name else p.stem
        for p in paths
    ]
    unique: list[str] = []
    for name in named:
        candidate, n = name, 2
        while candidate in unique:
            candidate, n = f"{name}-{n}", n + 1
        unique.append(candidate)
    return unique


def _file_label(step: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in step)


def _summary(result: StepResult, files: list[str]) -> dict:
    x = result.images  # [B, C, H, W]
    return {
        "step": result.step,
        "description": result.description,
        "shape": list(x.shape),
        "bands": [
            {
                "name": name,
                "min": [round(v, 6) for v in x[:, k].amin(dim=(1, 2)).tolist()],
                "max": [round(v, 6) for v in x[:, k].amax(dim=(1, 2)).tolist()],
            }
            for k, name in enumerate(result.band_names)
        ],
        "files": files,
    }


def _write_figure(
    result: StepResult, image_index: int, number: int, last: int, source: str, path: Path
) -> None:
    """One PNG: every band of one image after one step, each titled with its range and, up to
    MAX_COLOUR_BARS bands, with a colour bar (beyond that they cost more time than they add)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cnnlab.fileio import atomic_write_bytes

    bands = result.images[image_index].detach().cpu()  # [C, H, W]
    count, (height, width) = bands.shape[0], bands.shape[1:]
    columns = min(count, 4 if count <= 8 else 8)
    rows = math.ceil(count / columns)
    # Inches per panel: small images are magnified (pixels kept); many bands get smaller panels.
    panel = min(5.0, max(3.6, width / 80)) if columns <= 4 else 2.6
    aspect = min(2.0, max(0.5, height / width))
    figure_width = max(6.5, columns * panel * 1.25)
    with_bars = count <= MAX_COLOUR_BARS
    figure = Figure(
        figsize=(figure_width, rows * (panel * aspect + 0.6) + 1.0),
        dpi=100,
        layout="constrained" if with_bars else None,
    )
    if not with_bars:
        top = 1 - 1.1 / figure.get_figheight()  # room for the title lines
        figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, hspace=0.3)
    FigureCanvasAgg(figure)
    plural = "band" if count == 1 else "bands"
    title = (
        f"step {number}/{last}: {result.step}   ({source}, {count} {plural} of {width}x{height})"
    )
    lines = textwrap.wrap(result.description, width=int(figure_width * 13))
    legend = "grey bands: black = min, white = max;  signed bands: blue < 0 (white) < red"
    figure.suptitle("\n".join([title, *lines, legend]), fontsize=10)
    for k in range(count):
        axes = figure.add_subplot(rows, columns, k + 1)
        _draw_band(figure, axes, bands[k].numpy(), result.band_names[k], with_bars)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        raise CnnlabError(
            f"Could not write '{path}' ({error.strerror}). Choose a writable folder with --out."
        ) from None


def _draw_band(figure, axes, band, name: str, colour_bar: bool) -> None:
    """Grey for non-negative bands; blue-white-red centred on 0 for signed ones."""
    import numpy as np

    low, high = float(band.min()), float(band.max())
    if low < 0:
        reach = max(-low, high, 1e-12)
        shown = axes.imshow(band, cmap="RdBu_r", vmin=-reach, vmax=reach)
    else:
        shown = axes.imshow(band, cmap="gray", vmin=low, vmax=max(high, low + 1e-12))
    shown.set_interpolation("nearest")
    if band.size <= MAX_ANNOTATED_PIXELS:  # small enough to print every value, as the slides do
        for (y, x), value in np.ndenumerate(band):
            light = shown.norm(value) < 0.25 if low >= 0 else abs(shown.norm(value) - 0.5) > 0.3
            colour = "white" if light else "black"
            axes.text(x, y, f"{value:.3g}", ha="center", va="center", color=colour, fontsize=9)
    axes.set_title(f"{name}\nmin {low:.4g}   max {high:.4g}", fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    if colour_bar:
        figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
