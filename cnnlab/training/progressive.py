"""--progressive-resize SIZE:FRACTION: the first epochs train on smaller images, the rest in full.

Progressive resizing as fast.ai's DAWNBench ImageNet entries used it (issue 17 measures it with the
airbench tricks): early epochs learn coarse features from cheaper, smaller images. Which epochs are
small is a function of the epoch index and the run's first --epochs alone, so a resumed run
(mid-epoch too) trains each epoch at the size an uninterrupted one does. Images are resized on the
device after normalisation, in the training step only; validation and every later stage see the
full size.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.run.records import DatasetRecord
from cnnlab.training.config import TrainConfig, parse_progressive_resize


def small_epochs(epochs: int, fraction: Fraction) -> int:
    """How many of `epochs` train small: round(fraction x epochs) with halves rounded up (3
    epochs at 1/2: 2), at most epochs - 1, so the last epoch trains at the size validated."""
    return min(int(fraction * epochs + Fraction(1, 2)), epochs - 1)


def small_shape(image_size: tuple[int, int], size: int) -> tuple[int, int]:
    """[H, W] with the longer side `size` and the aspect ratio kept: (32, 32), 24 -> (24, 24)."""
    height, width = image_size
    scale = Fraction(size, max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class ResizePlan:
    """Epochs 0 .. small_epochs - 1 (0-based) train at `shape`, later ones at `full`."""

    shape: tuple[int, int]  # [H, W] of the small epochs
    full: tuple[int, int]
    small_epochs: int
    first_epochs: int  # the run's first --epochs, which the rule counts from

    def size_at(self, epoch: int) -> tuple[int, int] | None:
        """The shape epoch `epoch` (0-based) trains at; None: the data's own."""
        return self.shape if epoch < self.small_epochs else None

    def describe(self) -> str:
        small, full = "x".join(map(str, self.shape)), "x".join(map(str, self.full))
        if not self.small_epochs:
            return (
                f"progressive resizing: no epoch of {self.first_epochs} is small "
                f"(the fraction rounds to 0); every epoch trains at {full}"
            )
        return (
            f"progressive resizing: epochs 1-{self.small_epochs} of {self.first_epochs} train "
            f"on {small} images, the rest at {full}; validation at {full}"
        )


def plan_resize(
    config: TrainConfig, image_size: tuple[int, int], first_epochs: int
) -> ResizePlan | None:
    """The plan of --progressive-resize for data of `image_size` [H, W] (None when off);
    `first_epochs`: the --epochs the run started with (its first segment's)."""
    parsed = parse_progressive_resize(config.progressive_resize)
    if parsed is None:
        return None
    size, fraction = parsed
    if size >= max(image_size):
        full = "x".join(map(str, image_size))
        raise ConfigError(
            f"--progressive-resize {config.progressive_resize}: SIZE {size} is not smaller than "
            f"the images ({full}); give a SIZE below {max(image_size)}, e.g. "
            f"{max(8, max(image_size) * 3 // 4)}:0.5, or leave the flag out."
        )
    shape = small_shape(image_size, size)
    return ResizePlan(shape, tuple(image_size), small_epochs(first_epochs, fraction), first_epochs)


def check_model_takes(model: nn.Module, channels: int, plan: ResizePlan, config: TrainConfig):
    """Run the model once, in eval mode without gradients, on zeros of the small shape; a
    ConfigError if it cannot take them (a flatten -> dense head sized for the full images).
    The random streams are forked, so the run draws the same numbers as without the check."""
    device = next(model.parameters(), torch.empty(0)).device
    devices = [device] if device.type == "cuda" else []
    training = model.training
    zeros = torch.zeros(1, channels, *plan.shape, device=device)
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            model(zeros)
    except (RuntimeError, ValueError) as error:
        small, full = "x".join(map(str, plan.shape)), "x".join(map(str, plan.full))
        raise ConfigError(
            f"--progressive-resize {config.progressive_resize}: model {config.model} cannot take "
            f"{small} images ({str(error).splitlines()[0][:120]}): its dense layers are sized "
            f"for {full}, or its pooling is too deep for {small}. Use a network with global "
            'pooling, e.g. small-cnn, resnet20, or a spec with "gap -> fc" in place of '
            '"flatten -> fc"; or a larger SIZE, or leave the flag out.'
        ) from None
    finally:
        model.train(training)


def resize_images(x: torch.Tensor, shape: tuple[int, int], channels_last: bool) -> torch.Tensor:
    """Prepared images [B, C, H, W] -> [B, C, *shape]: bilinear, antialiased when shrinking,
    in channels_last memory format when the step uses it."""
    x = F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def session_plan(
    config: TrainConfig, first_epochs: int, record: DatasetRecord, model: nn.Module
) -> ResizePlan | None:
    """The run's plan (None when off), the model checked to take the small images. The rule
    counts from the run's first --epochs (`first_epochs`: its first segment's)."""
    if not config.progressive_resize:
        return None
    plan = plan_resize(config, tuple(record.image_size), first_epochs)
    check_model_takes(model, record.channels, plan, config)
    return plan
