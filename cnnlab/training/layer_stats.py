"""Per-layer statistics while training (`--layer-stats N`), following seed 003's advice to monitor
the parameters during training and to check that the initialised ones change sensibly.

Every N optimiser steps, for each module holding parameters (convolutions, linear layers,
norms): the L2 norm of its weights, of the gradient that step used, and the update-to-weight
ratio ||w_after - w_before|| / ||w_before|| (around 1e-3 is healthy, a common rule of thumb);
and on a fixed probe batch of validation images, run in eval mode, the mean and standard
deviation of each such module's output and of each activation's, the fraction of dead units
(channels zero on every probe image and position) and, for tanh and sigmoid, the fraction of
saturated outputs. Only the writing process records (no collective is involved), and the probe
forward goes through the bare model, never the DistributedDataParallel wrapper.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import torch
from torch import nn

from cnnlab.ops.activations import ACTIVATIONS
from cnnlab.runtime.predict import StepSettings, autocast, prepare

PROBE_IMAGES = 256
SATURATION = 0.99  # |tanh| above this, or sigmoid outside [1 - this, this], is saturated
PARAMETER_KEYS = ("weight_norm", "grad_norm", "update_ratio")
ACTIVATION_KEYS = ("mean", "sd", "dead", "saturated")


def parameter_layers(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Dotted name -> the module's own parameters, for every module that holds some."""
    layers = {}
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own:
            layers[name or "model"] = own
    return layers


def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of the tensors taken together, as a float32 scalar."""
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t.detach().float()) for t in tensors])
    )


def parameter_stats(
    layers: dict[str, list[nn.Parameter]], before: dict[str, list[torch.Tensor]] | None
) -> dict[str, dict[str, float | None]]:
    """Weight norm, gradient norm (None: no gradient, e.g. a frozen or skipped step) and
    update-to-weight ratio against `before` (None without it) of every layer."""
    values = []
    for name, params in layers.items():
        nan = torch.tensor(math.nan, device=params[0].device)
        grads = [p.grad for p in params if p.grad is not None]
        update = nan
        if before is not None:
            old = before[name]
            change = _norm([p.detach() - b for p, b in zip(params, old, strict=True)])
            update = change / _norm(old)
        values.append(torch.stack([_norm(params), _norm(grads) if grads else nan, update]))
    table = torch.stack(values).tolist() if values else []  # one transfer for all layers
    return {
        name: {key: _finite_or_none(value) for key, value in zip(PARAMETER_KEYS, row, strict=True)}
        for name, row in zip(layers, table, strict=True)
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@cache
def _activation_classes() -> dict[type, str]:
    """The module class of each registered activation -> its name."""
    return {type(ACTIVATIONS.get(name).module()): name for name in ACTIVATIONS}


def _activation_kind(module: nn.Module) -> str | None:
    """The name of the registered activation `module` is (by its class), else None."""
    return _activation_classes().get(type(module))


def output_summary(output: torch.Tensor, kind: str | None) -> torch.Tensor:
    """[mean, sd, dead fraction, saturated fraction] of one module's output [N, C, ...]; dead
    and saturated are NaN where they do not apply (not an activation, not tanh/sigmoid)."""
    a = output.detach().float()
    per_unit = a.transpose(0, 1).reshape(a.shape[1], -1) if a.dim() >= 2 else a.reshape(1, -1)
    nan = torch.tensor(math.nan, device=a.device)
    dead = (per_unit == 0).all(dim=1).float().mean() if kind is not None else nan
    if kind == "tanh":
        saturated = (a.abs() > SATURATION).float().mean()
    elif kind == "sigmoid":
        saturated = ((a > SATURATION) | (a < 1 - SATURATION)).float().mean()
    else:
        saturated = nan
    sd = a.std() if a.numel() > 1 else nan
    return torch.stack([a.mean(), sd, dead, saturated])


@contextmanager
def recording_outputs(model: nn.Module, names: set[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks on the named modules and every activation, filling name -> summary; the
    hooks are removed however the block ends."""
    found: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str, kind: str | None):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() >= 1 and output.numel():
                found[name] = output_summary(output, kind)

        return hook

    try:
        for name, module in model.named_modules():
            kind = _activation_kind(module)
            if kind is not None or (name or "model") in names:
                handles.append(module.register_forward_hook(hook_for(name or "model", kind)))
        yield found
    finally:
        for handle in handles:
            handle.remove()


def probe_stats(
    model: nn.Module, images: torch.Tensor, settings: StepSettings, names: set[str]
) -> dict[str, dict[str, float | None]]:
    """Output statistics of the named modules and the activations on `images`, in eval mode;
    each module's mode is restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), recording_outputs(model, names) as found:
            x = prepare(images, settings)
            with autocast(x.device, settings.precision):
                model(x)
    finally:
        for module, training in modes:
            module.training = training
    table = torch.stack(list(found.values())).tolist() if found else []
    return {
        name: {
            key: _finite_or_none(value)
            for key, value in zip(ACTIVATION_KEYS, row, strict=True)
            if key in ("mean", "sd") or math.isfinite(value)
        }
        for name, row in zip(found, table, strict=True)
    }


def choose_probe(images: torch.Tensor, seed: int, count: int = PROBE_IMAGES) -> torch.Tensor:
    """`count` images drawn once without replacement (seeded), the same on every record."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(images), generator=generator)[:count]
    return images.index_select(0, rows.to(images.device))


class LayerStats:
    """Records the statistics every `every` steps: `before_step(n)` keeps the weights step n
    starts from when step n is recorded; `after_step(n, ...)` returns step n's row or None."""

    def __init__(
        self, model: nn.Module, probe: torch.Tensor, settings: StepSettings, every: int
    ) -> None:
        self.model, self.probe, self.settings, self.every = model, probe, settings, every
        self.layers = parameter_layers(model)
        self._before: dict[str, list[torch.Tensor]] | None = None
        self._before_step: int | None = None

    def before_step(self, step: int) -> None:
        if step % self.every == 0 and self._before_step != step:
            self._before = {
                name: [p.detach().clone() for p in params] for name, params in self.layers.items()
            }
            self._before_step = step

    def after_step(self, step: int, epoch: int) -> dict[str, Any] | None:
        if step % self.every:
            return None
        before = self._before if self._before_step == step else None
        self._before, self._before_step = None, None
        weights = parameter_stats(self.layers, before)
        probed = probe_stats(self.model, self.probe, self.settings, set(self.layers))
        layers = {  # in the model's order, shallow to deep
            name: {**weights.get(name, {}), **probed.get(name, {})}
            for name in (name or "model" for name, _ in self.model.named_modules())
            if name in weights or name in probed
        }
        return {"step": step, "epoch": epoch, "layers": layers}
