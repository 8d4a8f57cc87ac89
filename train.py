"""Train a LoRA (or the whole network) for a video diffusion model with DeepSpeed pipeline parallelism.

    deepspeed --include=localhost:0,1 train.py --deepspeed --config my.toml
    deepspeed --num_gpus 2 train.py --deepspeed --config examples/demo.toml     # no GPU: CPU ranks (gloo)
    deepspeed --hostfile hosts [--no_ssh --node_rank R --master_addr A] train.py --deepspeed --config my.toml   # nodes

Configs speak diffusion-pipe's dialect (utils/config.py lists every key). The run directory gets
the resolved config, the dataset report, events.jsonl (progress for the studio), TensorBoard
scalars, epochN/ LoRAs and checkpoints/ to resume from (docs/architecture.md).
"""

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from utils.checkpointing import find_resume_checkpoint, resume_problem
from utils.cluster import PREEMPT_SIGNALS, PREEMPTED_MARKER, REQUEUE_EXIT
from utils.config import ConfigError, ConfigIssue, load_dataset_config, load_main_config
from utils.dataset import HELDOUT, heldout_config
from utils.run_context import RunContext

EVAL_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CONTROL_FLAGS = ('save', 'save_quit', 'stop', 'checkpoint', 'preempt', 'resources')
POLL_SECONDS = 1.0            # how often, roughly, control files and signals are looked at


def parse_args(argv=None, description=__doc__):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True, help='main TOML config')
    p.add_argument('--local_rank', type=int, default=-1, help='set by the deepspeed launcher')
    p.add_argument('--run_dir', help='write into this run directory instead of a new one under output_dir')
    p.add_argument('--resume_from_checkpoint', nargs='?', const=True, default=None,
                   help='resume: no value = newest checkpoint (of --run_dir, else of the newest run), '
                        'or a run directory, or a checkpoint folder')
    p.add_argument('--regenerate_cache', action='store_true', help='encode every item again')
    p.add_argument('--cache_only', action='store_true', help='fill the cache, then exit')
    p.add_argument('--trust_cache', action='store_true', help='use the saved item list without re-checking source files')
    p.add_argument('--reset_dataloader', action='store_true',
                   help='when resuming: keep the weights, optimizer, step and epoch, but start that epoch from its first batch')
    p.add_argument('--reset_optimizer', action='store_true',
                   help='when resuming: load the weights only; the optimizer and learning-rate schedule start fresh')
    p.add_argument('--i_know_what_i_am_doing', action='store_true',
                   help="accepted for diffusion-pipe compatibility; it skips advisory dataset checks there, and every "
                        "check here is an error that would break the run, so nothing is skipped")
    p.add_argument('--master_port', type=int, help='port of the rendezvous between processes (sets MASTER_PORT)')
    p.add_argument('--dump_dataset', nargs='?', const=True, default=None, metavar='PATH',
                   help='print the dataset report and exit (loads no weights); with PATH, also write '
                        'dataset_report.json and dataset_report.txt there')
    p.add_argument('--deepspeed', action='store_true', help='accepted for diffusion-pipe compatibility')
    p.add_argument('--deepspeed_config', help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------------

class Trainer:
    def __init__(self, args, config, adapter, dataset_config, eval_configs, run_dir, events, resume_from=None):
        import deepspeed.comm as dist
        self.dist = dist
        self.args = args
        self.config = config
        self.adapter = adapter
        self.dataset_config = dataset_config
        self.eval_configs = eval_configs
        self.run_dir = Path(run_dir)
        self.events = events
        self.resume_from = resume_from
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.stages = config['pipeline_stages']
        self.dp_world = self.world // self.stages
        self.device = local_device()
        self.ctx = RunContext(rank=self.rank, world=self.world, dp_world=self.dp_world, device=self.device,
                              barrier=dist.barrier, events=events, run_dir=self.run_dir)
        self.seed = config['seed']
        self.ga = config['gradient_accumulation_steps']
        self.preempt_signal = None      # name of a preemption signal received (SIGTERM, SIGUSR1)
        self.exit_code = 0              # REQUEUE_EXIT after a preemption checkpoint
        self.last_resources = 0.0
        # Position in the data; saved in checkpoints so that a resume continues exactly here.
        self.step = 0
        self.epoch = 1
        self.batch_in_epoch = 0
        self.examples = 0
        self.last_checkpoint_time = time.time()
        self.until_poll = 0
        self.last_progress_event = 0.0
        self.tb = None
        self.wandb = None

    # -- setup ----------------------------------------------------------------------------------
    def prepare_data(self):
        from utils.train_data import TrainData
        self.events.status('caching', 'building the dataset and the latent / text cache')
        flags = {'regenerate': self.args.regenerate_cache, 'trust': self.args.trust_cache}
        self.data = TrainData.build(self.ctx, self.config, self.adapter, self.dataset_config, 'train', **flags)
        self.eval_data = {name: TrainData.build(self.ctx, self.config, self.adapter, cfg, f'eval/{name}', **flags)
                          for name, cfg in self.eval_configs.items()}
        self.dist.barrier()

    def build_engine(self):
        self.events.status('loading', 'loading the transformer weights and building the engine')
        import deepspeed

        from optimizers import build_optimizer
        from utils.checkpointing import Saver
        from utils.pipeline import ClippedStep, StudioPipelineModule, checkpoint_function, release_other_stages
        from utils.schedule import build_scheduler

        cfg = self.config
        self.adapter.build_diffusion_model(seed=self.seed)
        layers = self.adapter.to_layers()
        ac = cfg['activation_checkpointing']
        self.pipe = StudioPipelineModule(
            layers=layers,
            num_stages=self.stages,
            loss_fn=self.adapter.loss,
            partition_method=cfg['partition_method'],
            partition_split=cfg.get('partition_split'),
            activation_checkpoint_interval=1 if ac or cfg['blocks_to_swap'] else 0,
            activation_checkpoint_func=checkpoint_function(ac or True, cfg['reentrant_activation_checkpointing']),
            checkpointable_layers=self.adapter.checkpointable_layers,
            topology=self.topology(),
        )
        release_other_stages(layers, self.pipe.forward_funcs)
        self.swapper = self.build_swapper(layers, checkpoint_all=bool(ac)) if cfg['blocks_to_swap'] else None
        if cfg['compile']:
            for layer in self.pipe.forward_funcs:
                layer.compile()
        params = [p for p in self.pipe.parameters() if p.requires_grad]
        optimizer = build_optimizer(cfg['optimizer'], params)
        self.total_steps = self.planned_steps()
        pipe_group = self.pipe._grid.get_pipe_parallel_group() if self.stages > 1 else None
        self.clipper = ClippedStep(optimizer, params, cfg['gradient_clipping'], pipe_group)   # before the scheduler wraps step
        self.clipper.track_experts(self.adapter.expert_parameters(), self.device)
        if cfg.get('force_constant_lr') is not None:
            for group in optimizer.param_groups:
                group['lr'] = cfg['force_constant_lr']
            scheduler = build_scheduler(optimizer, 0, self.total_steps, 'constant')
        else:
            scheduler = build_scheduler(optimizer, cfg['warmup_steps'], self.schedule_steps(), cfg['lr_scheduler'], cfg['lr_min'])
        ds_config = {
            'train_micro_batch_size_per_gpu': 1,     # our data iterator sizes each micro-batch itself
            'gradient_accumulation_steps': self.ga,
            'gradient_clipping': 0.0,               # ClippedStep clips (trainable weights only)
            'steps_per_print': 10 ** 9,             # progress is ours (events.jsonl, console bar)
            'wall_clock_breakdown': False,
        }
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.pipe, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
        if self.swapper is not None:
            print(f'[rank {self.rank}] block swap: {len(self.swapper.layers)} blocks, '
                  f'{self.swapper.swapped_bytes() / 2 ** 30:.2f} GiB of frozen weights in CPU memory, '
                  f'{self.swapper.device_bytes(self.pipe) / 2 ** 30:.2f} GiB of the stage on {self.device}', flush=True)
        self.engine.zero_grad = self.clipper.zero_grad
        self.dp_rank = self.engine.grid.get_data_parallel_rank()
        if self.dp_world == 1:
            self.engine.pipeline_enable_backward_allreduce = False     # one replica: no gradients to average
        self.stage_id = self.engine.stage_id
        self.saver = Saver(self.ctx, self.adapter, self.pipe, self.engine, lora=cfg.get('adapter') is not None)
        trainable = sum(p.numel() for p in params)
        print(f'[rank {self.rank}] stage {self.stage_id}, data-parallel rank {self.dp_rank}: '
              f'{len(self.pipe.forward_funcs)} layers, {trainable:,} trainable parameters', flush=True)

    def build_swapper(self, layers, checkpoint_all):
        """Before deepspeed.initialize moves the stage to the device: the swapped blocks' frozen weights
        stay in CPU memory from the start. Without activation_checkpointing, only the swapped blocks
        are checkpointed."""
        from utils.offload import BlockSwapper, swap_share
        kinds = self.adapter.checkpointable_layers
        parts = self.pipe.parts
        stage_blocks = [sum(type(m).__name__ in kinds for m in layers[a:b]) for a, b in zip(parts, parts[1:])]
        share = swap_share(self.config['blocks_to_swap'], stage_blocks, self.pipe.stage_id)
        blocks = [m for m in self.pipe.forward_funcs if type(m).__name__ in kinds]
        swapper = BlockSwapper(blocks[:share], self.device)
        if not checkpoint_all:
            self.pipe.checkpoint_swapped_only()
        return swapper

    def topology(self):
        """Each pipeline on consecutive ranks, i.e. inside one node; replicas across nodes."""
        from utils.cluster import node_local_topology
        return node_local_topology(self.stages, self.dp_world)

    def planned_steps(self):
        per_epoch = self.data.steps_per_epoch
        by_epochs = per_epoch * self.config['epochs']
        return min(by_epochs, self.config['max_steps']) if self.config['max_steps'] else by_epochs

    def schedule_steps(self):
        """Step at which the learning-rate decay ends. diffusion-pipe's horizon: warm-up, then epochs x steps
        per epoch, whatever max_steps says; lr_schedule_steps = 'max_steps' ends it at the run's last step."""
        if self.config['lr_schedule_steps'] == 'max_steps':
            return self.total_steps
        return self.config['warmup_steps'] + self.data.steps_per_epoch * self.config['epochs']

    # -- one step -------------------------------------------------------------------------------
    def noise_generator(self, step, micro, tag=0):
        """Noise and timesteps depend only on (seed, step, micro-batch, data-parallel rank): identical on
        the first and last pipeline stage, and identical after a resume."""
        key = (((self.seed * 1_000_003 + tag) * 1_000_033 + step) * 1009 + micro) * 131 + self.dp_rank
        return torch.Generator().manual_seed(key % (2 ** 63))

    def micro_batches(self, loaded, step, quantile=None, tag=0):
        """(inputs, labels) per micro-batch of this data-parallel rank, as DeepSpeed's pipeline pulls them."""
        for micro, items in enumerate(loaded):
            batch = self.adapter.collate(items)
            inputs, labels = self.adapter.prepare_inputs(batch, self.noise_generator(step, micro, tag), quantile)
            experts = self.adapter.sample_experts(inputs)
            if experts is not None and quantile is None and self.stage_id == 0:
                self.clipper.count_samples(experts)      # an expert no rank gave a sample takes no step
            yield inputs, labels

    def loads_data(self):
        """Only the first pipeline stage (inputs) and the last (labels) read data."""
        return self.stage_id in (0, self.stages - 1)

    def epoch_stream(self, batches):
        """Micro-batches of this rank for the rest of the epoch, loaded ahead of time."""
        if not self.loads_data():
            return None
        return self.data.stream([m for gb in batches[self.batch_in_epoch:] for m in gb.for_rank(self.dp_rank)],
                                depth=2 * self.ga)

    def train_step(self, stream):
        self.engine.reset_activation_shape()
        loaded = [next(stream) for _ in range(self.ga)] if stream is not None else []
        loss = self.engine.train_batch(iter(self.micro_batches(loaded, self.step)))
        return float(loss)

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self):
        if not self.eval_data:
            return
        self.events.status('evaluating', f'evaluating {", ".join(self.eval_data)}')
        self.engine.eval()
        if self.swapper is not None and self.config['disable_block_swap_for_eval']:
            self.swapper.set_enabled(False)
        ga = self.config['eval_gradient_accumulation_steps']
        for name, data in self.eval_data.items():
            batches = data.global_batches(0)
            per_quantile = []
            for qi, q in enumerate(EVAL_QUANTILES):
                losses = []
                for bi, gb in enumerate(batches):
                    self.engine.reset_activation_shape()
                    loaded = [data.load(m) for m in gb.for_rank(self.dp_rank)] if self.loads_data() else []
                    it = self.micro_batches(loaded, bi, quantile=q, tag=1000 + qi)
                    losses.append(float(self.engine.eval_batch(it, num_micro_batches=ga)))
                per_quantile.append(sum(losses) / max(1, len(losses)))
                self.log_metric(f'eval/{name}/loss_q{q:.1f}', per_quantile[-1])
            self.log_metric(f'eval/{name}/loss', sum(per_quantile) / len(per_quantile))
        self.engine.train()
        if self.swapper is not None:
            self.swapper.set_enabled(True)
        self.events.status('training', 'training')

    # -- saving (utils/checkpointing.py) --------------------------------------------------------
    def save_adapter(self, name):
        self.saver.save_adapter(name, epoch=self.epoch, step=self.step)

    def state_dict(self):
        return {'step': self.step, 'epoch': self.epoch, 'batch_in_epoch': self.batch_in_epoch,
                'examples': self.examples, 'seed': self.seed, 'stages': self.stages, 'dp_world': self.dp_world,
                'grad_accum': self.ga}

    def load_state_dict(self, state):
        self.step = state['step']
        self.epoch = state['epoch']
        self.batch_in_epoch = state['batch_in_epoch']
        self.examples = state['examples']

    def save_checkpoint(self):
        self.saver.save_checkpoint(f'step{self.step}', self.state_dict())
        self.last_checkpoint_time = time.time()

    def resume(self, ckpt_dir):
        force_lr = self.config.get('force_constant_lr') is not None
        reset_optimizer = self.args.reset_optimizer
        self.load_state_dict(self.saver.restore(ckpt_dir, self.scheduler, load_lr_scheduler=not (force_lr or reset_optimizer),
                                                load_optimizer=not reset_optimizer))
        if self.args.reset_dataloader and self.batch_in_epoch:
            print(f'--reset_dataloader: epoch {self.epoch} starts again from its first batch', flush=True)
            self.batch_in_epoch = 0
        print(f'resumed from {ckpt_dir}: step {self.step}, epoch {self.epoch}, batch {self.batch_in_epoch}', flush=True)

    # -- control and logging --------------------------------------------------------------------
    def poll_control(self, step_seconds, force=False):
        """Rank 0 reads control files (and every rank its SIGTERM flag); all ranks get the union.
        It costs a collective, so it runs about once a second (every step for slow steps), at step
        counts every rank agrees on: the interval travels with the flags."""
        self.until_poll -= 1
        if self.until_poll > 0 and not force:
            return dict.fromkeys(CONTROL_FLAGS, False)
        flags = [0] * (len(CONTROL_FLAGS) + 1)
        if self.rank == 0:
            control = self.run_dir / 'control'
            for i, name in enumerate(CONTROL_FLAGS):
                f = control / name
                if f.exists():
                    flags[i] = 1
                    f.unlink(missing_ok=True)
            minutes = self.config.get('checkpoint_every_n_minutes')
            if minutes and time.time() - self.last_checkpoint_time >= minutes * 60:
                flags[CONTROL_FLAGS.index('checkpoint')] = 1
            flags[-1] = max(1, min(50, int(POLL_SECONDS / max(step_seconds, 1e-3))))
            flags[CONTROL_FLAGS.index('resources')] |= int(self.resources_due())
        if self.preempt_signal:
            flags[CONTROL_FLAGS.index('preempt')] = 1
        t = torch.tensor(flags, dtype=torch.int64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        values = t.tolist()
        self.until_poll = values[-1]
        return {name: bool(v) for name, v in zip(CONTROL_FLAGS, values)}

    def log_metric(self, name, value):
        if name.startswith('train/') and self.step % self.config['logging_steps']:
            return
        self.events.metric(name, self.step, value, epoch=self.epoch)
        x = self.examples if self.config['x_axis_examples'] else self.step
        if self.tb is not None:
            self.tb.add_scalar(name, value, x)
        if self.wandb is not None:
            self.wandb.log({name: value}, step=x)

    def _start_wandb(self):
        mon = self.config.get('monitoring') or {}
        if not mon.get('enable_wandb'):
            return None
        import wandb
        if mon.get('wandb_api_key'):
            wandb.login(key=mon['wandb_api_key'])
        wandb.init(project=mon.get('wandb_tracker_name') or None, name=mon.get('wandb_run_name') or self.run_dir.name,
                   config=json.loads(json.dumps(self.config, default=str)), dir=str(self.run_dir))
        return wandb

    def due(self, key, unit_value, previous=None):
        n = self.config.get(key)
        if not n:
            return False
        if previous is None:
            return unit_value % n == 0
        return unit_value // n > previous // n

    # -- the loop -------------------------------------------------------------------------------
    def run(self):
        cfg = self.config
        self.events.status('starting', 'loading the model')
        for sig in PREEMPT_SIGNALS:
            signal.signal(sig, self._on_preempt_signal)
        self.prepare_data()
        if self.args.cache_only:
            self.events.status('done', 'cache complete')
            return
        self.build_engine()
        if self.resume_from:
            self.resume(self.resume_from)
        self.record_layout()
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(self.run_dir / 'tensorboard'))
            self.wandb = self._start_wandb()

        self.events.status('training', 'training')
        warning = nothing_to_evaluate(cfg, self.eval_configs)
        if warning and self.rank == 0:
            print(f'warning: {warning}', flush=True)
            self.events.warning(warning)
        if cfg['eval_before_first_step'] and self.step == 0:
            self.evaluate()
        bar = self._progress_bar()
        started, start_step, self.start_examples = time.time(), self.step, self.examples
        finished = self.step >= self.total_steps
        while not finished:
            batches = self.data.global_batches(self.epoch)
            stream = self.epoch_stream(batches)
            while self.batch_in_epoch < len(batches) and not finished:
                t0 = time.time()
                lr = self.optimizer.param_groups[0]['lr']       # the rate this step uses
                loss = self.train_step(stream)
                prev_examples = self.examples
                self.examples += self.data.examples_in(batches[self.batch_in_epoch])
                self.step += 1
                self.batch_in_epoch += 1
                self.report_step(loss, lr, started, start_step, len(batches), bar)
                finished = self.step >= self.total_steps
                if self.after_step(time.time() - t0, prev_examples, finished) == 'stopped':
                    return self._close(bar)
            finished = self.after_epoch(batches, finished)
        if not (self.run_dir / 'checkpoints' / f'step{self.step}' / 'trainer_state.json').is_file():
            self.save_checkpoint()   # a final checkpoint lets a finished run continue for more epochs
        self.events.status('done', f'finished: {self.step} steps, {self.epoch - 1} epochs')
        return self._close(bar)

    def after_step(self, step_seconds, prev_examples, finished):
        """Control requests, saves and evaluations due after a step; 'stopped' when the run stops here."""
        ctl = self.poll_control(step_seconds, force=finished)
        if self.due('save_every_n_steps', self.step) or \
                self.due('save_every_n_examples', self.examples, prev_examples) or ctl['save'] or ctl['save_quit']:
            self.save_adapter(f'step{self.step}')
        # At the last step a stop changes nothing: the run finishes (final save, checkpoint, done).
        if (ctl['checkpoint'] or ctl['stop'] or ctl['save_quit']) and not finished:
            self.save_checkpoint()
        if (ctl['stop'] or ctl['save_quit']) and not finished:
            self.events.status('stopped', f'stopped at step {self.step} on request; resume from checkpoints/step{self.step}')
            return 'stopped'
        if ctl['resources']:
            self.report_resources()
        if ctl['preempt'] and not finished:
            return self.preempt()
        if self.due('eval_every_n_steps', self.step) or self.due('eval_every_n_examples', self.examples, prev_examples):
            self.evaluate()
        return None

    def after_epoch(self, batches, finished):
        """Saves, evaluation and checkpoint due when an epoch is complete (or the last step's adapter when
        max_steps ends the run inside one) -> whether the run is finished."""
        if self.batch_in_epoch >= len(batches):      # the epoch is complete
            epoch_done = self.epoch
            finished = finished or epoch_done >= self.config['epochs']
            if self.due('save_every_n_epochs', epoch_done) or finished:
                self.save_adapter(f'epoch{epoch_done}')
            if self.due('eval_every_n_epochs', epoch_done):
                self.evaluate()
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.due('checkpoint_every_n_epochs', epoch_done) and not finished:
                self.save_checkpoint()
        elif finished and not (self.run_dir / f'step{self.step}').exists():
            self.save_adapter(f'step{self.step}')     # max_steps reached inside an epoch
        return finished

    def report_step(self, loss, lr, started, start_step, batches_in_epoch, bar):
        self.log_metric('train/loss', loss)
        self.log_metric('train/lr', lr)
        if self.clipper.last_norm is not None:
            self.log_metric('train/grad_norm', self.clipper.last_norm)
        done = self.step - start_step
        now = time.time()
        if now - self.last_progress_event >= 0.5 or self.step >= self.total_steps:   # readers poll, no need for more
            self.last_progress_event = now
            steps_per_s = done / max(1e-9, now - started)
            self.events.progress(phase='train', step=self.step, total_steps=self.total_steps, epoch=self.epoch,
                                 total_epochs=self.config['epochs'], epoch_step=self.batch_in_epoch,
                                 steps_per_epoch=batches_in_epoch, steps_per_s=round(steps_per_s, 4),
                                 examples_per_s=round((self.examples - self.start_examples) / max(1e-9, now - started), 4),
                                 eta_s=round((self.total_steps - self.step) / steps_per_s, 1) if steps_per_s else None)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f'{loss:.4f}', lr=f'{lr:.2e}', epoch=self.epoch)

    def _progress_bar(self):
        if self.rank != 0:
            return None
        from tqdm import tqdm
        return tqdm(total=self.total_steps, initial=self.step, desc='train', unit='step', dynamic_ncols=True,
                    mininterval=1.0, file=sys.stdout)

    def _close(self, bar):
        if bar is not None:
            bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()

    def _on_preempt_signal(self, signum, frame):
        self.preempt_signal = signal.Signals(signum).name

    # -- several nodes (utils/cluster.py) -------------------------------------------------------
    def preempt(self):
        """A preemption signal reached some rank: checkpoint, then exit with REQUEUE_EXIT ('start me again')."""
        if not (self.run_dir / 'checkpoints' / f'step{self.step}' / 'trainer_state.json').is_file():
            self.save_checkpoint()
        self.events.status('stopped', f'preempted at step {self.step} ({self.preempt_signal or "signal on another rank"}); '
                                      f'checkpoints/step{self.step} written, exit {REQUEUE_EXIT} asks to be started again')
        if self.rank == 0:
            from utils.fsutil import atomic_write_text
            atomic_write_text(self.run_dir / PREEMPTED_MARKER, f'{self.step}\n')
        self.exit_code = REQUEUE_EXIT
        return 'stopped'

    def all_ranks(self, obj):
        """Every rank's `obj`, in rank order (a collective)."""
        import torch.distributed
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def record_layout(self):
        """Print where every rank runs and write it to <run>/layout.json."""
        from utils.cluster import DeviceUse, describe_rank, format_layout, layout_record
        from utils.fsutil import atomic_write_json
        self.whoami = describe_rank(self.rank, self.stage_id, self.dp_rank, self.device)
        self.device_use = DeviceUse(self.device)
        layout = layout_record(self.all_ranks(self.whoami), self.stages, self.dp_world)
        if self.rank == 0:
            atomic_write_json(self.run_dir / 'layout.json', layout)
            print(format_layout(layout), flush=True)

    def resources_due(self):
        from utils.cluster import resources_interval
        every = resources_interval()
        if not every or time.time() - self.last_resources < every:
            return False
        self.last_resources = time.time()
        return True

    def report_resources(self):
        """One `resources` event per rank (gathered to rank 0, which alone writes events)."""
        for sample in self.all_ranks({**self.whoami, **self.device_use.sample()}):
            self.events.emit('resources', step=self.step, **sample)


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------

def local_device():
    """The device this rank computes on (the CPU when DeepSpeed's accelerator is the CPU)."""
    from deepspeed.accelerator import get_accelerator
    acc = get_accelerator()
    if acc.device_name() == 'cpu':
        return torch.device('cpu')
    return torch.device(acc.device_name(int(os.environ.get('LOCAL_RANK', 0))))


def load_everything(args, world_size):
    """Config, model adapter (cheap: no weights), dataset configs. Raises on any refusal."""
    from models import get_adapter_class
    config = load_main_config(args.config, world_size=world_size)
    adapter = get_adapter_class(config['model']['type'])(config)
    spec = adapter.media_spec
    blocks = getattr(adapter, 'num_blocks', None)
    if config['blocks_to_swap'] and blocks is not None and config['blocks_to_swap'] > blocks - 2:
        raise ConfigError([ConfigIssue(args.config, 'blocks_to_swap', config['blocks_to_swap'],
                                       f'this model has {blocks} blocks; at most {blocks - 2} can be swapped')])
    dataset_config = load_dataset_config(config['dataset'], spec.size_multiple)
    eval_configs = {e['name']: load_dataset_config(e['config'], spec.size_multiple) for e in config['eval_datasets']}
    if dataset_config.get('eval_split'):
        if HELDOUT in eval_configs:
            raise ConfigError([ConfigIssue(args.config, 'eval_datasets', HELDOUT,
                                           f"eval_split makes the eval dataset '{HELDOUT}': name this one otherwise")])
        eval_configs[HELDOUT] = heldout_config(dataset_config)
    return config, adapter, dataset_config, eval_configs


EVAL_KEYS = ('eval_every_n_epochs', 'eval_every_n_steps', 'eval_every_n_examples')


def nothing_to_evaluate(config, eval_configs):
    """The warning for a run asked to evaluate with no eval dataset (None when that is not the case)."""
    asked = [k for k in EVAL_KEYS if config.get(k)]
    if not asked or eval_configs:
        return None
    return (f'{asked[0]} = {config[asked[0]]} but there is nothing to evaluate: add eval_datasets to the config '
            f'or eval_split to the dataset')


def refuse(message, run_dir, rank):
    print(f'error: {message}', file=sys.stderr, flush=True)
    if run_dir and rank == 0:
        from utils.events import EventWriter
        events = EventWriter(run_dir)
        events.status('failed', message)
        events.close()
    sys.exit(2)


def choose_run_dir(args, config, resume_ckpt):
    if args.run_dir:
        return Path(args.run_dir).resolve()
    if resume_ckpt is not None:
        return Path(resume_ckpt).resolve().parent.parent
    return Path(config['output_dir']).resolve() / datetime.now().strftime('%Y%m%d_%H-%M-%S')


def write_run_files(run_dir, args, config):
    import tomli_w

    from utils.fsutil import atomic_write_bytes, atomic_write_text
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / 'control').mkdir(exist_ok=True)
    dataset_copy = run_dir / 'dataset.toml'
    if Path(config['dataset']).resolve() != dataset_copy.resolve():
        atomic_write_bytes(dataset_copy, Path(config['dataset']).read_bytes())
    clean = json.loads(json.dumps(config, default=str))
    atomic_write_text(run_dir / 'config.toml', tomli_w.dumps(_drop_none(clean)))


def _drop_none(value):
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def release_shm_segment(rank):
    """DeepSpeed's CPU all-reduce (its shm comm op) maps one /dev/shm segment per rank, named after the
    user, MASTER_ADDR, MASTER_PORT and the rank, and never unlinks it: every CPU run would leave ~66 MB of
    memory behind. Once all ranks have mapped each other's segments the names can go; the memory stays
    mapped until the processes exit, however they exit."""
    name = (f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_{os.environ.get('MASTER_ADDR')}_"
            f"{os.environ.get('MASTER_PORT')}_{rank}")
    with contextlib.suppress(OSError):
        os.unlink(name)


def main(argv=None):
    args = parse_args(argv)
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    try:
        config, adapter, dataset_config, eval_configs = load_everything(args, world_size)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as e:    # ModelConfigError is a ValueError
        refuse(str(e).strip("'\""), args.run_dir, rank)

    if args.dump_dataset:
        from utils.train_data import dump_dataset_report
        out_dir = Path(args.dump_dataset) if isinstance(args.dump_dataset, str) else None
        dump_dataset_report(config, adapter, dataset_config, Path(args.run_dir) if args.run_dir else None, world_size,
                            out_dir)
        return 0

    resume_ckpt, run_dir = resume_and_run_dir(args, config, world_size, rank)
    return run_distributed(args, config, run_dir, lambda run_dir, events: Trainer(
        args, config, adapter, dataset_config, eval_configs, run_dir, events, resume_ckpt))


def resume_and_run_dir(args, config, world_size, rank):
    """(checkpoint to resume or None, run directory) from the command line; refuses (exit 2) a resume that cannot be."""
    resume_ckpt = None
    if args.resume_from_checkpoint:
        try:
            resume_ckpt = find_resume_checkpoint(args.resume_from_checkpoint, config['output_dir'], args.run_dir)
        except FileNotFoundError as e:
            refuse(str(e), args.run_dir, rank)
        problem = resume_problem(resume_ckpt, config, world_size)
        if problem:
            refuse(problem, args.run_dir, rank)
    return resume_ckpt, choose_run_dir(args, config, resume_ckpt)


def clear_stale_build_locks():
    """A process killed while it JIT-built a DeepSpeed op (on the CPU: the shared-memory collectives) leaves
    `<TORCH_EXTENSIONS_DIR>/.../lock`, and torch would wait on it without a word, for ever. One older than
    ODEO_BUILD_LOCK_STALE_S (600 s; a build takes a minute or two) is nobody's: remove it, saying so."""
    from torch.utils.cpp_extension import get_default_build_root

    from utils.fsutil import remove_stale_build_locks
    stale_s = float(os.environ.get('ODEO_BUILD_LOCK_STALE_S', 600))
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or get_default_build_root()
    for lock in remove_stale_build_locks(root, stale_s):
        print(f'removed a stale build lock {lock} (older than {stale_s:g}s: left by a process killed while '
              f'it built the op)', flush=True)


def run_distributed(args, config, run_dir, make_trainer):
    """Join the process group, agree on the run directory, write its files, then make_trainer(run_dir, events).run()
    with heartbeats and return the trainer's exit_code (0, or REQUEUE_EXIT after a preemption); a failure is
    reported as a `failed` status and raised."""
    if args.master_port is not None:
        os.environ['MASTER_PORT'] = str(args.master_port)
    clear_stale_build_locks()
    import deepspeed
    from deepspeed.accelerator import get_accelerator
    from utils.cluster import collective_timeout
    timeout = collective_timeout()
    deepspeed.init_distributed(**({'timeout': timeout} if timeout else {}))
    if get_accelerator().device_name() != 'cpu':
        get_accelerator().set_device(int(os.environ.get('LOCAL_RANK', 0)))
    import deepspeed.comm as dist
    names = [str(run_dir)]
    dist.broadcast_object_list(names, src=0)      # a timestamped name is chosen once, by rank 0
    run_dir = Path(names[0])
    if dist.get_rank() == 0:
        write_run_files(run_dir, args, config)
    dist.barrier()                                # every rank is past init: all shm segments are mapped
    release_shm_segment(dist.get_rank())
    from utils.cluster import leave_process_group, nodes_see_run_dir
    problem = nodes_see_run_dir(run_dir, dist)
    if problem:
        rank = dist.get_rank()
        leave_process_group(dist)
        refuse(problem, run_dir, rank)

    from utils.events import EventWriter
    events = EventWriter(run_dir, enabled=dist.get_rank() == 0)
    events.start_heartbeat()
    try:
        trainer = make_trainer(run_dir, events)
        trainer.run()
    except Exception as e:
        events.status('failed', f'{type(e).__name__}: {e}')
        raise
    finally:
        events.close()
    if trainer.exit_code:          # every rank agreed on it: leave together, so each returns its status
        leave_process_group(dist)
    return trainer.exit_code


if __name__ == '__main__':
    sys.exit(main())
