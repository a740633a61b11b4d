"""Optimizers and learning-rate schedules, built from the config with PyTorch's own classes."""

from __future__ import annotations

import math

import torch

from striate.config import TrainConfig


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW. Biases and norm weights get no weight decay."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernels update all parameters in one pass: measurably faster for small CNNs.
    fused = {"fused": True}
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, **fused)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999), **fused)


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule: constant, step decay, cosine annealing or one-cycle."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle" and total < 3:  # no room for a warm-up and a decay: the peak rate
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
    if config.schedule == "onecycle":
        # At least one warm-up step: with fewer than two, OneCycleLR starts short runs at (or past) the peak.
        warmup = max(config.warmup_fraction, 2 / total)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=warmup,
            cycle_momentum=config.optimizer == "sgd" and config.momentum > 0,
            base_momentum=min(0.85, config.momentum), max_momentum=config.momentum)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "step":
        every = config.step_epochs or max(1, math.ceil(config.epochs / 3))
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=every * steps_per_epoch, gamma=config.step_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
