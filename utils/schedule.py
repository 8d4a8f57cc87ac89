"""Learning-rate schedule: linear warm-up, then constant, linear decay to zero or cosine decay to a floor.

The decay ends at `total_steps` (counted from the first step, warm-up included). The trainer makes that
diffusion-pipe's horizon by default, warm-up + epochs x steps per epoch, so a run that max_steps cuts
short stops part-way down the curve as it would there; `lr_schedule_steps = 'max_steps'` ends it at the
run's last step instead (Trainer.schedule_steps).
"""

import math

import torch


def lr_multiplier(step, warmup_steps, total_steps, kind, floor=0.0):
    """Factor applied to the base learning rate before optimizer step `step` (0-based). The cosine
    schedule ends at `floor` (a fraction of the base rate), the linear one at zero."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == 'constant' or not total_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == 'linear':
        return max(0.0, 1.0 - progress)
    if kind == 'cosine':
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f'unknown lr_scheduler {kind!r}')


def build_scheduler(optimizer, warmup_steps, total_steps, kind, min_lr=0.0):
    """min_lr: the learning rate the cosine schedule ends at (diffusion-pipe: 1e-6), for every group."""
    def for_group(group):
        floor = min_lr / group['lr'] if group['lr'] else 0.0
        return lambda step: lr_multiplier(step, warmup_steps, total_steps, kind, floor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [for_group(g) for g in optimizer.param_groups])


def sync_lr(scheduler):
    """Set each group's learning rate to what the schedule gives the next step. After a checkpoint
    loads, the optimizer carries the rate the old schedule computed; a resume whose total steps
    changed (more epochs) would otherwise take one step at that rate (zero at the end of a decay)."""
    for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group['lr'] = base * fn(scheduler.last_epoch)
    scheduler._last_lr = [group['lr'] for group in scheduler.optimizer.param_groups]
