"""Optimisers (SGD with momentum/Nesterov, AdamW) and schedules (one-cycle, cosine, step, constant).

Every schedule steps once per optimiser step, so a run resumed mid-epoch follows the same curve.
Weight decay applies to weights of rank >= 2 only: biases and normalisation scales are not decayed.
The optimisers are torch.optim's own, minus the wrappers that import torch._dynamo (see EagerSGD).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from cnnlab.training.config import TrainConfig


def _undecorated(method: Any) -> Any:
    """torch.optim's function under its decorators (`_disable_dynamo` and
    `_use_grad_for_differentiable` keep `__wrapped__`; without it, the decorated one runs)."""
    return inspect.unwrap(method)


class _Eager:
    """torch.optim's methods without the wrappers that import torch._dynamo, for eager training.

    torch 2.14 wraps add_param_group (called by __init__), zero_grad, state_dict and
    load_state_dict in `torch._disable_dynamo`, and every optimizer's step() in
    `_use_grad_for_differentiable`: each imports torch._dynamo (sympy, torch.fx: 1.4-2.0 s of a
    training process's start, measured) only to keep torch.compile from tracing them. Here they
    call the same undecorated functions, step() under the grad mode torch's wrapper sets, so the
    updates and state_dict() are torch's own, bit for bit; while torch.compile is tracing, the
    decorated originals run.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _undecorated(torch.optim.Optimizer.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if torch.compiler.is_compiling():
            return super().zero_grad(set_to_none)
        _undecorated(torch.optim.Optimizer.zero_grad)(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return _undecorated(torch.optim.Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _undecorated(torch.optim.Optimizer.load_state_dict)(self, state_dict)

    def step(self, closure: Any = None) -> Any:
        torch_step = super().step.__func__  # SGD.step or Adam.step
        if getattr(torch_step, "hooked", False):  # the step hooks' wrapper: ours runs them
            torch_step = torch_step.__wrapped__
        if torch.compiler.is_compiling():
            return torch_step(self, closure)
        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return _undecorated(torch_step)(self, closure)
        finally:
            torch.set_grad_enabled(previous)


class EagerSGD(_Eager, torch.optim.SGD):
    """torch.optim.SGD without torch._dynamo (see _Eager); state_dict() is SGD's."""


class EagerAdamW(_Eager, torch.optim.AdamW):
    """torch.optim.AdamW without torch._dynamo (see _Eager); state_dict() is AdamW's."""


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def stage_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Discriminative learning rates: stage i from the top (0: the head) gets lr * F**i, with
    F = --lr-decay-per-stage; each stage split into decayed and not decayed parameters."""
    from cnnlab.training.finetune import stage_of_parameters

    stages = stage_of_parameters(model)
    lr, factor = config.resolved_learning_rate, config.lr_decay_per_stage
    groups = []
    for stage in sorted(set(stages.values())):
        for decayed in (True, False):
            params = [p for n, p in model.named_parameters()
                      if stages[n] == stage and (p.ndim >= 2) == decayed]  # fmt: skip
            if params:
                weight_decay = config.weight_decay if decayed else 0.0
                groups.append({"params": params, "weight_decay": weight_decay,
                               "lr": lr * factor**stage})  # fmt: skip
    return groups


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.lr_decay_per_stage != 1.0:
        groups = stage_groups(model, config)
    else:
        groups = parameter_groups(model, config.weight_decay)
    lr = config.resolved_learning_rate
    fused = fused_on(next(model.parameters()).device)
    if config.optimizer == "sgd":
        return EagerSGD(
            groups,
            lr=lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            fused=fused,
        )
    return EagerAdamW(groups, lr=lr, betas=(config.momentum, 0.999), fused=fused)


def fused_on(device: torch.device) -> bool | None:
    """On a CUDA GPU the fused kernels: one launch per step, and a step whose loss was not finite
    is skipped inside them without a read-back (training/loop.py). Elsewhere torch's default."""
    return True if device.type == "cuda" else None


def build_scheduler(
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    epochs: int | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule over `epochs` (default config.epochs; a run's later segment spans fewer)."""
    total_steps = max(1, (epochs or config.epochs) * steps_per_epoch)
    schedulers = torch.optim.lr_scheduler
    if config.schedule == "onecycle":
        return schedulers.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],  # one per stage
            total_steps=total_steps,
            pct_start=config.warmup_fraction,
            cycle_momentum=False,
        )
    if config.schedule == "cosine":
        return schedulers.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "step":
        return schedulers.StepLR(
            optimizer, step_size=config.step_epochs * steps_per_epoch, gamma=config.step_gamma
        )
    return schedulers.ConstantLR(optimizer, factor=1.0, total_iters=0)
