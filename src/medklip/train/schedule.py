"""Learning-rate schedule: linear warm-up from ``warmup_lr`` then cosine decay to ``min_lr``."""
from __future__ import annotations

import math

import torch


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, warmup_lr: float, min_lr: float) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                       warmup_lr: float, min_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR (its state is the step count, so it resumes exactly)."""
    base = optimizer.param_groups[0]["lr"]

    def factor(step: int) -> float:
        return lr_at(step, total_steps, warmup_steps, base, warmup_lr, min_lr) / base

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
