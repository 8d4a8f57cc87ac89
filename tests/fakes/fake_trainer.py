"""A stand-in for train.py that speaks the job protocol of docs/architecture.md, for tests that cannot
train a real model many times in a few seconds.

Same command line (including --local_rank from the deepspeed launcher), same run directory, events,
control files, SIGTERM handling, checkpoints with trainer_state.json, resume and exit codes. Steps per
epoch come from the real config keys (files in the dataset folders, num_repeats, micro batch,
gradient accumulation, data-parallel ranks); saves and checkpoints follow save_every_n_* and
checkpoint_every_n_*.

How it misbehaves is told through its config: the dataset folder the config points at may hold a
`fake_trainer.toml`:

    step_time = 0.05            # seconds per step
    heartbeat_interval = 0.2    # seconds between heartbeat events
    startup_delay = 0.0         # seconds before the first event
    crash_at_step = 5           # raise at this step (exit 1, status failed) ...
    crash_times = 1             # ... this many times over the run directory's life
    hang_at_step = 5            # stop everything, heartbeats included, and sleep ...
    hang_times = 1
    die_at_step = 5             # vanish at this step without a word (os._exit(die_code))
    die_code = 1
    refuse = false              # refuse the configuration: status failed, exit 2
    ignore_control = false      # never look at control/ (so only signals stop it)
    ignore_sigterm = false      # ignore SIGTERM (so only SIGKILL stops it)
    crash_every = 0             # with crash_times: crash at steps crash_at_step, +crash_every, ... (progress between)
    bind_master_port = false    # bind MASTER_PORT as torch's TCPStore does; taken: torch's EADDRINUSE error, exit 1
    wait_build_lock = false     # before any event, wait (silently) while $TORCH_EXTENSIONS_DIR/deepspeed_shm_comm/lock
                                # exists, as DeepSpeed's CPU op build does (torch's FileBaton)
    report_nodes = 0            # after each step, one `resources` event per rank of this many one-rank nodes, as
                                # train.py's rank 0 writes them for a multi-node run
"""

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path

MEDIA = {'.jpg', '.jpeg', '.png', '.webp', '.mp4', '.mov', '.webm', '.gif'}
DEFAULTS = {'step_time': 0.05, 'heartbeat_interval': 0.2, 'startup_delay': 0.0, 'crash_at_step': None,
            'crash_times': 1, 'hang_at_step': None, 'hang_times': 1, 'die_at_step': None, 'die_code': 1,
            'refuse': False, 'ignore_control': False, 'ignore_sigterm': False, 'crash_every': 0,
            'bind_master_port': False, 'wait_build_lock': False, 'report_nodes': 0}


def parse_args(argv):
    p = argparse.ArgumentParser()
    p.add_argument('--local_rank', type=int, default=0)
    p.add_argument('--deepspeed', action='store_true')
    p.add_argument('--config', required=True)
    p.add_argument('--run_dir')
    p.add_argument('--resume_from_checkpoint', nargs='?', const=True, default=None)
    for flag in ('--regenerate_cache', '--cache_only', '--trust_cache', '--dump_dataset'):
        p.add_argument(flag, action='store_true')
    p.add_argument('--seed', type=int, default=42)
    return p.parse_args(argv)


class Events:
    def __init__(self, path):
        self.f = open(path, 'a', encoding='utf-8')
        self.lock = threading.Lock()

    def emit(self, etype, **fields):
        line = json.dumps({"time": time.time(), "type": etype, **fields})
        with self.lock:
            self.f.write(line + '\n')
            self.f.flush()


def atomic_write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_bytes(data)
    os.replace(tmp, path)


def count_times(run_dir, kind):
    """How often this run directory already did `kind` (crash, hang) — kept across attempts."""
    marker = run_dir / f'.fake_{kind}_count'
    n = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(n + 1))
    return n


class FakeTrainer:
    def __init__(self, args):
        self.args = args
        self.cfg = tomllib.loads(Path(args.config).read_text(encoding='utf-8'))
        self.run_dir = Path(args.run_dir) if args.run_dir else Path(self.cfg['output_dir']) / time.strftime('%Y%m%d_%H-%M-%S')
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.dataset = tomllib.loads(Path(self.cfg['dataset']).read_text(encoding='utf-8'))
        dirs = [Path(d['path']) for d in self.dataset.get('directory', [])]
        self.behave = dict(DEFAULTS)
        for d in dirs:
            if (d / 'fake_trainer.toml').is_file():
                self.behave.update(tomllib.loads((d / 'fake_trainer.toml').read_text()))
        repeats = self.dataset.get('num_repeats', 1)
        items = sum(sum(1 for f in d.iterdir() if f.suffix.lower() in MEDIA) * d_cfg.get('num_repeats', repeats)
                    for d, d_cfg in zip(dirs, self.dataset.get('directory', [])) if d.is_dir())
        world = int(os.environ.get('WORLD_SIZE', '1'))
        dp = max(1, world // self.cfg.get('pipeline_stages', 1))
        per_step = self.cfg.get('micro_batch_size_per_gpu', 1) * self.cfg.get('gradient_accumulation_steps', 1) * dp
        self.steps_per_epoch = max(1, math.ceil(items / per_step))
        self.epochs = self.cfg.get('epochs', 1000)
        self.total = self.epochs * self.steps_per_epoch
        if self.cfg.get('max_steps'):
            self.total = min(self.total, self.cfg['max_steps'])
        self.events = Events(self.run_dir / 'events.jsonl')
        self.control = self.run_dir / 'control'
        self.control.mkdir(exist_ok=True)
        self.sigterm = False
        self.beating = True
        self.last_ckpt_time = time.time()

    # ---- protocol pieces ----------------------------------------------------------------------------
    def heartbeat(self):
        while True:
            time.sleep(self.behave['heartbeat_interval'])
            if self.beating:
                self.events.emit('heartbeat')

    def save_lora(self, name, step):
        import numpy as np
        from safetensors.numpy import save
        rank = (self.cfg.get('adapter') or {}).get('rank', 4)
        tensors = {'diffusion_model.blocks.0.self_attn.q.lora_A.weight': np.full((rank, 8), step, np.float32),
                   'diffusion_model.blocks.0.self_attn.q.lora_B.weight': np.zeros((8, rank), np.float32)}
        folder = self.run_dir / name
        atomic_write(folder / 'adapter_model.safetensors', save(tensors))
        atomic_write(folder / 'adapter_config.json', json.dumps({'r': rank, 'lora_alpha': rank, 'peft_type': 'LORA'}).encode())
        self.events.emit('artifact', kind='lora', path=f'{name}/adapter_model.safetensors',
                         epoch=self.epoch_of(step), step=step)

    def save_checkpoint(self, step):
        folder = self.run_dir / 'checkpoints' / f'step{step}'
        atomic_write(folder / 'model_states.json', json.dumps({'step': step}).encode())
        state = {'step': step, 'epoch': self.epoch_of(step), 'steps_per_epoch': self.steps_per_epoch, 'seed': self.args.seed}
        atomic_write(folder / 'trainer_state.json', json.dumps(state).encode())     # last: marks it complete
        self.events.emit('artifact', kind='checkpoint', path=f'checkpoints/step{step}', epoch=self.epoch_of(step), step=step)
        self.last_ckpt_time = time.time()

    def epoch_of(self, step):
        return max(1, math.ceil(step / self.steps_per_epoch))

    def resume_step(self):
        arg = self.args.resume_from_checkpoint
        if arg is None:
            return 0
        where = self.run_dir if arg is True else Path(arg)
        if not (where / 'trainer_state.json').is_file():
            found = [p for p in (where / 'checkpoints').glob('*') if (p / 'trainer_state.json').is_file()]
            if not found:
                raise SystemExit(f'no checkpoint in {where}')
            where = max(found, key=lambda p: json.loads((p / 'trainer_state.json').read_text())['step'])
        step = json.loads((where / 'trainer_state.json').read_text())['step']
        self.events.emit('status', state='starting', message=f'resuming from {where} at step {step}')
        return step

    def take_control(self):
        """The first control request present: consumed (deleted) once acted on."""
        if self.behave['ignore_control']:
            return None
        for name in ('stop', 'save_quit', 'save'):
            f = self.control / name
            if f.exists():
                f.unlink()
                return name
        return None

    def finish(self, state, step, code=0, message=''):
        self.events.emit('status', state=state, message=message or f'{state} at step {step}')
        (self.run_dir / '.fake_rank0_exit').touch()
        sys.stdout.flush()
        os._exit(code)

    # ---- the run ------------------------------------------------------------------------------------
    def run(self):
        b = self.behave
        signal.signal(signal.SIGTERM, signal.SIG_IGN if b['ignore_sigterm'] else self.on_sigterm)
        time.sleep(b['startup_delay'])
        if b['wait_build_lock']:
            self.wait_build_lock()
        self.events.emit('status', state='starting', message='fake trainer')
        threading.Thread(target=self.heartbeat, daemon=True).start()
        if b['bind_master_port']:
            self.bind_master_port()
        if b['refuse']:
            print('config.toml: refused by the fake trainer', file=sys.stderr)
            self.finish('failed', 0, 2, 'config.toml: refused by the fake trainer')
        start = self.resume_step()
        print(f'fake trainer: {self.total} steps, {self.steps_per_epoch} per epoch, from step {start}', flush=True)
        self.events.emit('status', state='training', message='')
        t0 = time.time()
        for step in range(start + 1, self.total + 1):
            request = 'stop' if self.sigterm else self.take_control()
            if request in ('stop', 'save_quit'):
                if request == 'save_quit':
                    self.save_lora(f'step{step - 1}', step - 1)
                self.save_checkpoint(step - 1)
                self.finish('stopped', step - 1)
            if request == 'save':
                self.save_lora(f'step{step - 1}', step - 1)
            self.misbehave(step)
            time.sleep(b['step_time'])
            self.after_step(step, start, t0)
        self.save_lora(f'epoch{self.epoch_of(self.total)}', self.total)
        self.save_checkpoint(self.total)
        self.finish('done', self.total)

    def wait_build_lock(self):
        folder = os.environ.get('TORCH_EXTENSIONS_DIR')
        if not folder:
            print('fake trainer: TORCH_EXTENSIONS_DIR is not set (the op would build in ~/.cache)', file=sys.stderr)
            os._exit(1)
        lock = Path(folder) / 'deepspeed_shm_comm' / 'lock'
        while lock.exists():
            time.sleep(0.1)

    def bind_master_port(self):
        import socket
        port = int(os.environ.get('MASTER_PORT', '29500'))
        self.store = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.store.bind(('127.0.0.1', port))
        except OSError:
            print('torch.distributed.DistNetworkError: The server socket has failed to listen on any local network '
                  f'address. port: {port}, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use',
                  file=sys.stderr, flush=True)
            os._exit(1)

    def crashes_at(self, step):
        b = self.behave
        if b['crash_at_step'] is None:
            return False
        if b['crash_every']:          # each of these steps crashes once
            marker = self.run_dir / f'.fake_crashed_at_{step}'
            if step < b['crash_at_step'] or (step - b['crash_at_step']) % b['crash_every'] or marker.exists():
                return False
            marker.touch()
            return True
        return step == b['crash_at_step']

    def misbehave(self, step):
        b = self.behave
        if self.crashes_at(step) and count_times(self.run_dir, 'crash') < b['crash_times']:
            self.events.emit('status', state='failed', message=f'RuntimeError: fake crash at step {step}')
            raise RuntimeError(f'fake crash at step {step}')
        if b['hang_at_step'] == step and count_times(self.run_dir, 'hang') < b['hang_times']:
            self.beating = False
            print(f'fake trainer: hanging at step {step}', flush=True)
            while True:
                time.sleep(3600)
        if b['die_at_step'] == step:
            os._exit(b['die_code'])

    def after_step(self, step, start, t0):
        cfg, spe = self.cfg, self.steps_per_epoch
        epoch, epoch_step = self.epoch_of(step), (step - 1) % spe + 1
        lr = (cfg.get('optimizer') or {}).get('lr', 1e-4)
        self.events.emit('metric', name='train/loss', step=step, epoch=epoch, value=0.5 / math.sqrt(step) + 0.01 * (step % 3))
        self.events.emit('metric', name='train/lr', step=step, epoch=epoch, value=lr)
        rate = (step - start) / max(1e-6, time.time() - t0)
        self.events.emit('progress', phase='train', step=step, total_steps=self.total, epoch=epoch,
                         total_epochs=self.epochs, epoch_step=epoch_step, steps_per_epoch=spe,
                         examples_per_s=rate * cfg.get('micro_batch_size_per_gpu', 1), steps_per_s=rate,
                         eta_s=(self.total - step) / rate if rate else None)
        print(f'\rstep {step}/{self.total} loss {0.5 / math.sqrt(step):.4f}', end='\n' if step % spe == 0 else '', flush=True)
        for node in range(self.behave['report_nodes']):
            self.events.emit('resources', step=step, node=node, host=f'node{node}', rank=node, local_rank=0, stage=0,
                             dp_rank=node, device=0, kind='cpu', util_pct=40.0 + 10 * node,
                             mem_used_mib=1024.0 * (node + 1), mem_total_mib=16384.0, mem_peak_mib=None)
        if cfg.get('eval_every_n_steps') and step % cfg['eval_every_n_steps'] == 0:
            self.evaluate(step, epoch)
        if cfg.get('save_every_n_steps') and step % cfg['save_every_n_steps'] == 0:
            self.save_lora(f'step{step}', step)
        if epoch_step == spe and step < self.total:
            if cfg.get('eval_every_n_epochs') and epoch % cfg['eval_every_n_epochs'] == 0:
                self.evaluate(step, epoch)
            if cfg.get('save_every_n_epochs') and epoch % cfg['save_every_n_epochs'] == 0:
                self.save_lora(f'epoch{epoch}', step)
            if cfg.get('checkpoint_every_n_epochs') and epoch % cfg['checkpoint_every_n_epochs'] == 0:
                self.save_checkpoint(step)
        minutes = cfg.get('checkpoint_every_n_minutes')
        if minutes and time.time() - self.last_ckpt_time >= minutes * 60 and step < self.total:
            self.save_checkpoint(step)

    def evaluate(self, step, epoch):
        self.events.emit('status', state='evaluating', message='')
        base = 0.4 / math.sqrt(step)
        self.events.emit('metric', name='eval/eval/loss', step=step, epoch=epoch, value=base)
        for q in (0.1, 0.3, 0.5, 0.7, 0.9):
            self.events.emit('metric', name=f'eval/eval/loss_q{q}', step=step, epoch=epoch, value=base * (0.5 + q))
        self.events.emit('status', state='training', message='')

    def on_sigterm(self, *_):
        self.sigterm = True


def other_rank(args):
    """Ranks other than 0 write nothing; they live as long as rank 0 does."""
    cfg = tomllib.loads(Path(args.config).read_text(encoding='utf-8'))
    run_dir = Path(args.run_dir or cfg['output_dir'])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while not (run_dir / '.fake_rank0_exit').exists():
        time.sleep(0.1)


def main(argv=None):
    args = parse_args(argv)
    if int(os.environ.get('RANK', '0')) != 0:
        return other_rank(args)
    trainer = FakeTrainer(args)
    (trainer.run_dir / '.fake_rank0_exit').unlink(missing_ok=True)
    try:
        trainer.run()
    except RuntimeError:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


if __name__ == '__main__':
    main()
