"""Optimisers (SGD with momentum/Nesterov, AdamW) and schedules (one-cycle, cosine, step, constant).

Every schedule steps once per optimiser step, so a run resumed mid-epoch follows the same curve.
Weight decay applies to weights of rank >= 2 only: biases and normalisation scales are not decayed.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.training.config import TrainConfig


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
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
        )
    return torch.optim.AdamW(groups, lr=lr, betas=(config.momentum, 0.999))


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
