"""How a batch runs on this machine: normalisation, memory format, autocast, batched prediction,
and test-time augmentation.

Training, evaluation, prediction and explanation all prepare images with `prepare()` and run the
model under `autocast()`, so a network sees the same input whichever stage calls it. Test-time
augmentation (`StepSettings.tta`) lives in `tta_logits()` alone: validation, `train --test`,
`cnnlab evaluate` and `cnnlab predict` reach it through `predict_logits()`, and ONNX Runtime
through `with_tta()`. Its flip-shift follows airbench's (KellerJordan/cifar10-airbench) idea:
half the weight on the image and its mirror, half on two copies shifted one pixel diagonally.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data.loader import Normalizer, sequential_batches
from cnnlab.errors import ConfigError
from cnnlab.runtime import TTA_CHOICES
from cnnlab.runtime.fastpath import AUTOCAST_DTYPES

# A mirrored digit is another symbol or none: flip TTA mixes in images the model never saw.
NOT_FLIP_INVARIANT = ("digits", "mnist")

Predictor = Callable[[torch.Tensor, int], torch.Tensor]  # (uint8 images, batch size) -> logits


@dataclass(frozen=True)
class StepSettings:
    """What every forward pass needs besides the model: the run's normalisation, the fast
    path's precision and memory format, and the test-time augmentation of predictions."""

    normalizer: Normalizer
    precision: str = "fp32"  # "fp32", or autocast to "bf16" / "fp16" (cnnlab.runtime.fastpath)
    channels_last: bool = False
    tta: str = "none"  # "none", "flip", "flip-shift" (TTA_CHOICES): predict_logits only


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def prepare(images: torch.Tensor, settings: StepSettings) -> torch.Tensor:
    x = settings.normalizer(images)  # [B, C, H, W] float32
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


# Images per forward pass when predicting, by device type. On a CPU a batch of 256 keeps a small
# network's activations in the cores' caches: the Fashion-MNIST and CIFAR-10 recipe networks ran
# 1.55-2.2x faster than at 1024 on 2 Zen 5 cores in bf16 (the smallest, MNIST's, 0.7-1.0x;
# BENCHMARKS.md, "Evaluation batch"); a GPU wants large batches.
EVAL_BATCH = {"cpu": 256}
GPU_EVAL_BATCH = 1024


def eval_batch_size(device: torch.device) -> int:
    """The default number of images per forward pass on `device` (see EVAL_BATCH)."""
    return EVAL_BATCH.get(device.type, GPU_EVAL_BATCH)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    settings: StepSettings,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Logits [N, K] in float32 on the CPU for uint8 images [N, C, H, W] (on the model's device),
    averaged over the test-time augmentation's copies of each image (settings.tta), in batches
    of `batch_size` images (None: eval_batch_size of the images' device)."""
    model.eval()
    batch_size = batch_size or eval_batch_size(images.device)

    def forward(view: torch.Tensor) -> torch.Tensor:
        x = prepare(view, settings)
        with autocast(x.device, settings.precision):
            return model(x).float()

    outputs = [
        tta_logits(forward, batch, settings.tta).cpu()
        for batch in sequential_batches(images, batch_size)
    ]
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs)


def tta_views(images: torch.Tensor, tta: str) -> list[tuple[float, torch.Tensor]]:
    """The copies of images [B, C, H, W] whose logits `tta` averages, with weights summing to 1:
    none: the images; flip: they and their mirror images (0.5 each); flip-shift: those (0.25
    each) and the images shifted one pixel down-right and up-left, reflected at the border,
    each with its mirror image (0.125 each)."""
    if tta not in TTA_CHOICES:
        raise ConfigError(f"--tta {tta!r} is invalid: choose one of {', '.join(TTA_CHOICES)}.")
    if tta == "none":
        return [(1.0, images)]
    views = [(0.5, images), (0.5, images.flip(-1))]
    if tta == "flip":
        return views
    shifted = [shift_one_pixel(images, step) for step in (1, -1)]
    return [(0.25, view) for _, view in views] + [
        (0.125, view) for copy in shifted for view in (copy, copy.flip(-1))
    ]


def shift_one_pixel(images: torch.Tensor, step: int) -> torch.Tensor:
    """images [B, C, H, W] moved `step` (+1 or -1) pixels along both H and W; the row and column
    uncovered repeat their neighbour's neighbour (reflection, as torch's reflect padding)."""
    out = images
    for dim in (-2, -1):
        size = images.shape[dim]
        index = torch.arange(size, device=images.device) - step  # source of each output pixel
        index = torch.where(index >= size, 2 * (size - 1) - index, index.abs())
        out = out.index_select(dim, index.clamp(0, size - 1))
    return out


def tta_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tta: str
) -> torch.Tensor:
    """The weighted mean of `forward` (images -> float32 logits [B, K]) over tta_views."""
    views = tta_views(images, tta)
    if len(views) == 1:
        return forward(images)
    total = None
    for weight, view in views:
        logits = forward(view) * weight
        total = logits if total is None else total + logits
    return total


def with_tta(predict: Predictor, tta: str) -> Predictor:
    """A predictor (uint8 images, batch size) -> logits that averages `predict` over tta_views;
    how a runtime other than PyTorch (ONNX Runtime) honours --tta."""
    tta_views(torch.empty(0, 1, 1, 1), tta)  # refuses an unknown name now, not at first use
    if tta == "none":
        return predict
    return lambda images, batch_size: tta_logits(
        lambda view: predict(view, batch_size), images, tta
    )


def tta_warning(source: str, tta: str) -> str | None:
    """A line for flip TTA on a data set whose images are not mirror-symmetric, else None."""
    if tta == "none" or source not in NOT_FLIP_INVARIANT:
        return None
    return (
        f"warning: --tta {tta} mirrors the images, but {source} is not mirror-invariant (a "
        "mirrored digit is another symbol or none); it may cost accuracy here. Use --tta none."
    )
