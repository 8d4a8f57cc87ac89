"""Learning-rate schedule: linear warm-up, then constant, linear or cosine decay to zero."""

import math

import torch


def lr_multiplier(step, warmup_steps, total_steps, kind):
    """Factor applied to the base learning rate before optimizer step `step` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == 'constant' or not total_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == 'linear':
        return max(0.0, 1.0 - progress)
    if kind == 'cosine':
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f'unknown lr_scheduler {kind!r}')


def build_scheduler(optimizer, warmup_steps, total_steps, kind):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, warmup_steps, total_steps, kind))


def sync_lr(scheduler):
    """Set each group's learning rate to what the schedule gives the next step. After a checkpoint
    loads, the optimizer carries the rate the old schedule computed; a resume whose total steps
    changed (more epochs) would otherwise take one step at that rate (zero at the end of a decay)."""
    for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group['lr'] = base * fn(scheduler.last_epoch)
    scheduler._last_lr = [group['lr'] for group in scheduler.optimizer.param_groups]
