"""How a batch runs on this machine: normalisation, memory format, autocast, batched prediction.

Training, evaluation, prediction and explanation all prepare images with `prepare()` and run the
model under `autocast()`, so a network sees the same input whichever stage calls it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data.loader import Normalizer, sequential_batches
from cnnlab.runtime.fastpath import AUTOCAST_DTYPES


@dataclass(frozen=True)
class StepSettings:
    """What every forward pass needs besides the model: the run's normalisation and the fast
    path's precision and memory format."""

    normalizer: Normalizer
    precision: str = "fp32"  # "fp32", or autocast to "bf16" / "fp16" (cnnlab.runtime.fastpath)
    channels_last: bool = False


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def prepare(images: torch.Tensor, settings: StepSettings) -> torch.Tensor:
    x = settings.normalizer(images)  # [B, C, H, W] float32
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    settings: StepSettings,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Logits [N, K] in float32 on the CPU for uint8 images [N, C, H, W] (on the model's device)."""
    model.eval()
    outputs = []
    for batch in sequential_batches(images, batch_size):
        x = prepare(batch, settings)
        with autocast(x.device, settings.precision):
            outputs.append(model(x).float().cpu())
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs)
