"""What a training run leaves to be used or continued: the adapter of an epoch or step (epochN/, stepN/),
DeepSpeed checkpoints (checkpoints/stepN/ with trainer_state.json, written last), and which checkpoint
`--resume_from_checkpoint` means and whether this config can continue it.

    ckpt = find_resume_checkpoint(args.resume_from_checkpoint, config['output_dir'], args.run_dir)
    problem = resume_problem(ckpt, config, world_size)        # None, or why it cannot resume
    saver = Saver(ctx, adapter, pipe, engine, lora=True)      # every rank calls its methods at the same step
    saver.save_adapter('epoch3', epoch=3, step=120)
    saver.save_checkpoint('step120', trainer.state_dict())
    state = saver.restore(ckpt, scheduler)

Layout and the rules for a complete checkpoint: docs/architecture.md (Run directory, Checkpoints).
"""

import json
import os
import shutil
import time
from pathlib import Path

import torch

from utils.fsutil import atomic_write_json

# ------------------------------------------------------------------------------------------------
# Finding the checkpoint to resume
# ------------------------------------------------------------------------------------------------

def complete_checkpoints(run_dir):
    """Checkpoint folders of a run that finished writing (trainer_state.json is written last), oldest first."""
    root = Path(run_dir) / 'checkpoints'
    found = [d for d in root.glob('*') if (d / 'trainer_state.json').is_file()] if root.is_dir() else []
    return sorted(found, key=lambda d: json.loads((d / 'trainer_state.json').read_text())['step'])


def find_resume_checkpoint(arg, output_dir, run_dir):
    """-> checkpoint folder for --resume_from_checkpoint, or raise with what was looked at."""
    if arg is True:
        runs = [Path(run_dir)] if run_dir else sorted(Path(output_dir).glob('*'), key=lambda d: d.stat().st_mtime)
        for run in reversed(runs):
            ckpts = complete_checkpoints(run)
            if ckpts:
                return ckpts[-1]
        raise FileNotFoundError(f'--resume_from_checkpoint: no complete checkpoint in {run_dir or output_dir}')
    path = Path(arg)
    if (path / 'trainer_state.json').is_file():
        return path
    if path.is_dir() and complete_checkpoints(path):
        return complete_checkpoints(path)[-1]
    raise FileNotFoundError(f'--resume_from_checkpoint: {path} is neither a checkpoint folder nor a run with checkpoints')


def resume_problem(ckpt, config, world_size):
    """Why the checkpoint cannot continue with this config and process count (None if it can); warns
    when it can but the data order will differ from an uninterrupted run."""
    state = json.loads((Path(ckpt) / 'trainer_state.json').read_text())
    stages = state.get('stages', config['pipeline_stages'])
    if stages != config['pipeline_stages']:
        return (f'--resume_from_checkpoint: {ckpt} was written with pipeline_stages = {stages} and each stage keeps '
                f'its own optimizer state; set pipeline_stages = {stages} to resume it (this config has '
                f'{config["pipeline_stages"]})')
    now = {'dp_world': world_size // config['pipeline_stages'], 'grad_accum': config['gradient_accumulation_steps']}
    changed = [f'{key} {state[key]} -> {value}' for key, value in now.items() if state.get(key, value) != value]
    if changed and state.get('batch_in_epoch'):
        print(f'warning: {ckpt} stopped inside epoch {state["epoch"]} and {", ".join(changed)}: the rest of that '
              f'epoch is batched differently than an uninterrupted run would be', flush=True)
    return None


# ------------------------------------------------------------------------------------------------
# Saving and restoring
# ------------------------------------------------------------------------------------------------

class Saver:
    """Adapter saves and checkpoints of one run. Collective: every rank calls each method at the same step."""

    def __init__(self, ctx, adapter, pipe, engine, lora):
        self.ctx = ctx                  # utils.run_context.RunContext
        self.adapter = adapter
        self.pipe = pipe                # this stage's layers (StudioPipelineModule)
        self.engine = engine            # the DeepSpeed pipeline engine (or a plain engine: checkpoints only)
        self.lora = lora                # False: a full fine-tune, saved as a model folder
        grid = getattr(engine, 'grid', None)
        self.dp_rank = grid.get_data_parallel_rank() if grid is not None else ctx.rank
        self.stage_id = getattr(engine, 'stage_id', 0)

    def save_adapter(self, name, epoch, step):
        """Write epochN/ or stepN/: every stage contributes its layers' trained weights, rank 0 merges."""
        from safetensors.torch import load_file, save_file
        ctx = self.ctx
        ctx.events.status('saving', f'saving {name}')
        final = ctx.run_dir / name
        staging = ctx.run_dir / f'.{name}.partial'
        parts = staging / 'parts'
        local = self.adapter.trainable_state_dict(list(self.pipe.parameters()))
        if ctx.rank == 0:
            shutil.rmtree(staging, ignore_errors=True)
            parts.mkdir(parents=True)
        ctx.barrier()
        if self.dp_rank == 0:
            flat = {f'{expert}|{k}': v.float().cpu().contiguous() for expert, sd in local.items() for k, v in sd.items()}
            save_file(flat, parts / f'stage{self.stage_id}.safetensors')
        ctx.barrier()
        if ctx.rank == 0:
            merged = {}
            for part in sorted(parts.glob('*.safetensors')):
                for key, tensor in load_file(part).items():
                    expert, param = key.split('|', 1)
                    merged.setdefault(expert, {})[param] = tensor
            shutil.rmtree(parts)
            meta = {'odeo.epoch': str(epoch), 'odeo.step': str(step)}
            save = self.adapter.save_adapter if self.lora else self.adapter.save_full
            written = save(staging, merged, meta)
            shutil.copy(ctx.run_dir / 'config.toml', staging / 'config.toml')
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
            for expert, file in written.items():
                ctx.events.artifact('lora' if self.lora else 'model', (final / file).relative_to(ctx.run_dir),
                                    epoch=epoch, step=step, expert=None if len(written) == 1 else expert)
            print(f'saved {final}', flush=True)
        ctx.barrier()
        ctx.events.status('training', 'training')

    def save_checkpoint(self, tag, state):
        """checkpoints/<tag>/: DeepSpeed's files (frozen weights excluded), each rank's RNG state, then
        trainer_state.json (`state` and the time), which marks the checkpoint complete."""
        ctx = self.ctx
        root = ctx.run_dir / 'checkpoints'
        ctx.events.status('saving', f'checkpoint {tag}')
        self.engine.save_checkpoint(str(root), tag=tag, client_state={}, save_latest=False,
                                    exclude_frozen_parameters=True)
        rng = {'torch': torch.get_rng_state()}
        if ctx.device.type != 'cpu':     # dropout on the GPU draws from the device's generator
            rng['device'] = torch.get_device_module(ctx.device).get_rng_state(ctx.device)
        torch.save(rng, root / tag / f'rng_rank{ctx.rank}.pt')
        ctx.barrier()
        if ctx.rank == 0:
            atomic_write_json(root / tag / 'trainer_state.json', {**state, 'time': time.time()})
            ctx.events.artifact('checkpoint', (root / tag).relative_to(ctx.run_dir), epoch=state['epoch'],
                                step=state['step'])
        ctx.barrier()
        ctx.events.status('training', 'training')

    def restore(self, ckpt_dir, scheduler, load_lr_scheduler=True, load_optimizer=True):
        """Load a checkpoint into the engine (and this rank's RNG state) -> its trainer_state.json.
        load_optimizer = False (--reset_optimizer): the weights only; the optimizer starts fresh."""
        ckpt_dir = Path(ckpt_dir)
        load_path, _ = self.engine.load_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name, load_module_strict=False,
                                                   load_optimizer_states=load_optimizer,
                                                   load_lr_scheduler_states=load_lr_scheduler)
        if load_path is None:
            raise FileNotFoundError(f'could not load DeepSpeed checkpoint {ckpt_dir}')
        from utils.schedule import sync_lr
        sync_lr(scheduler)     # the optimizer state just loaded carries the old schedule's rate
        state = json.loads((ckpt_dir / 'trainer_state.json').read_text())
        rng = ckpt_dir / f'rng_rank{self.ctx.rank}.pt'
        if rng.exists():
            saved = torch.load(rng, weights_only=True)
            torch.set_rng_state(saved['torch'])
            if 'device' in saved and self.ctx.device.type != 'cpu':
                torch.get_device_module(self.ctx.device).set_rng_state(saved['device'], self.ctx.device)
        return state
