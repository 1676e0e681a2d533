"""Adjacency relations A(p): the pixels q that a kernel, pooling or normalisation sees around p.

Follows seed slide 000 ("Adjacency relation"): A(p) = {q in D_I : |x_q - x_p| <= w/2 and
|y_q - y_p| <= h/2}, and its generalisation to any list of offsets q - p, with dilation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError


@dataclass(frozen=True)
class Adjacency:
    """An adjacency relation as offsets (dy, dx) = q - p, in raster order (top to bottom, left to
    right), so that offset i is the weight index i of the slides' kernel W(q_i - p)."""

    offsets: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not self.offsets:
            raise ConfigError(
                "An adjacency relation needs at least one offset (dy, dx); got none. "
                "Use rectangular_adjacency(width, height) for the usual w x h window."
            )
        if len(set(self.offsets)) != len(self.offsets):
            raise ConfigError(f"Adjacency offsets must be distinct; got {list(self.offsets)}.")

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def extent(self) -> tuple[int, int, int, int]:
        """How far the relation reaches: (up, down, left, right), each >= 0."""
        dys = [dy for dy, _ in self.offsets]
        dxs = [dx for _, dx in self.offsets]
        return max(0, -min(dys)), max(0, max(dys)), max(0, -min(dxs)), max(0, max(dxs))

    def rectangle(self) -> tuple[int, int, int] | None:
        """(height, width, dilation) if this is rectangular_adjacency(width, height, dilation),
        else None; lets operations use torch's fast kernels for the common case."""
        height = len({dy for dy, _ in self.offsets})
        width = len({dx for _, dx in self.offsets})
        spans = [abs(dy) + abs(dx) for dy, dx in self.offsets if dy == 0 or dx == 0]
        dilation = min((s for s in spans if s > 0), default=1)
        if self == rectangular_adjacency(width, height, dilation):
            return height, width, dilation
        return None


def _window_offsets(size: int, dilation: int) -> list[int]:
    # Odd sizes: -(size-1)/2 .. (size-1)/2, exactly the slides' |x_q - x_p| <= w/2.
    # Even sizes: the slides' formula would give size + 1 positions; like torch's padding="same"
    # we take size positions, one more after p than before it (2 -> 0, 1; 4 -> -1 .. 2).
    first = -((size - 1) // 2)
    return [(first + i) * dilation for i in range(size)]


def rectangular_adjacency(width: int, height: int, dilation: int = 1) -> Adjacency:
    """The slides' rectangular relation of width w (along x) and height h (along y)."""
    for name, value in (("width", width), ("height", height), ("dilation", dilation)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"Adjacency {name} must be a positive integer; got {value!r}.")
    return Adjacency(
        tuple(
            (dy, dx)
            for dy in _window_offsets(height, dilation)
            for dx in _window_offsets(width, dilation)
        )
    )


def adjacency_from_offsets(offsets: Iterable[tuple[int, int]], dilation: int = 1) -> Adjacency:
    """Any relation, e.g. a cross [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]; offsets are (dy, dx)
    and are multiplied by dilation."""
    if not isinstance(dilation, int) or dilation < 1:
        raise ConfigError(f"Adjacency dilation must be a positive integer; got {dilation!r}.")
    pairs = []
    for offset in offsets:
        if len(offset) != 2 or not all(isinstance(v, int) for v in offset):
            raise ConfigError(
                f"Adjacency offset {offset!r} is not a pair of integers (dy, dx). "
                "Write offsets like (0, 1) for the right neighbour."
            )
        pairs.append((offset[0] * dilation, offset[1] * dilation))
    return Adjacency(tuple(sorted(pairs)))


def neighbourhood_values(
    images: torch.Tensor, adjacency: Adjacency, fill: float = 0.0, stride: int | tuple = 1
) -> torch.Tensor:
    """I(q_i) for every p and every q_i in A(p): [B, C, H, W] -> [B, C, |A|, H', W'].

    Neighbours outside the image domain D_I take the value fill (0 for zero padding; +-inf lets
    max/min pooling ignore them, as q in A(p) requires q in D_I). p runs over D_I with the given
    stride, so H' = ceil(H / stride_y) and W' = ceil(W / stride_x).
    """
    _check_images(images)
    stride_y, stride_x = _pair(stride, "stride")
    up, down, left, right = adjacency.extent
    padded = F.pad(images, (left, right, up, down), value=fill)  # [B, C, H+up+down, W+...]
    height, width = images.shape[-2:]
    values = [
        padded[..., up + dy : up + dy + height : stride_y, left + dx : left + dx + width : stride_x]
        for dy, dx in adjacency.offsets
    ]
    return torch.stack(values, dim=2)  # [B, C, |A|, H', W']


def _pair(value: int | tuple, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ConfigError(
            f"{name} must be a positive integer or a pair (height, width) of them; got {value!r}."
        )
    return pair


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(
            f"Expected a batch of images as a tensor [B, C, H, W]; got {shape}. "
            "Add a batch dimension with images.unsqueeze(0)."
        )
