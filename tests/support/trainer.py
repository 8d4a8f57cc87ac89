"""Launch train.py the way users do (the deepspeed launcher, CPU ranks with gloo) and read what it wrote."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.support.studio import free_port

ROOT = Path(__file__).resolve().parents[2]
DEEPSPEED = str(Path(sys.executable).parent / 'deepspeed')


def trainer_env():
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', HF_HUB_OFFLINE='1',
               TORCH_EXTENSIONS_DIR=str(ROOT / 'build' / 'torch_extensions'))
    return env


def official(tiny_models, variant):
    """The official Wan-AI folder of a tiny variant (conftest's tiny_models)."""
    return Path(tiny_models) / variant / 'official'


def config_text(ckpt_path, dataset, output_dir, **overrides):
    """A small main config for the tiny models; overrides replace or add top-level keys, and
    `model_extra` / `adapter` / `optimizer` strings replace those tables' bodies (`model_dtype`: [model] dtype)."""
    top = {'output_dir': repr(str(output_dir)), 'dataset': repr(str(dataset)), 'epochs': '2',
           'micro_batch_size_per_gpu': '1', 'pipeline_stages': '1', 'gradient_accumulation_steps': '2',
           'save_every_n_epochs': '1', 'save_dtype': "'float32'", 'caching_batch_size': '2'}
    model_extra = overrides.pop('model_extra', '')
    model_dtype = overrides.pop('model_dtype', 'float32')
    adapter = overrides.pop('adapter', "type = 'lora'\nrank = 4\ndtype = 'float32'")
    optimizer = overrides.pop('optimizer', "type = 'adamw'\nlr = 2e-3\nweight_decay = 0.0")
    top.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in overrides.items()})
    lines = [f'{k} = {v}' for k, v in top.items()]
    lines += ['', '[model]', "type = 'wan'", f'ckpt_path = {str(ckpt_path)!r}', f'dtype = {model_dtype!r}', model_extra]
    if adapter is not None:
        lines += ['', '[adapter]', adapter]
    lines += ['', '[optimizer]', optimizer]
    return '\n'.join(lines) + '\n'


def write_config(folder, text, name='config.toml'):
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def launch(config, run_dir, procs=1, extra=(), timeout=300, wait=True):
    port = free_port()
    cmd = [DEEPSPEED, '--num_gpus', str(procs), '--master_port', str(port), 'train.py', '--deepspeed',
           '--config', str(config), '--run_dir', str(run_dir), *extra]
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    log = open(Path(run_dir).parent / f'{Path(run_dir).name}.log', 'a')
    proc = subprocess.Popen(cmd, cwd=ROOT, env=trainer_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.master_port = port
    if not wait:
        return proc
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    return proc


def log_of(run_dir):
    return (Path(run_dir).parent / f'{Path(run_dir).name}.log').read_text(errors='replace')


def events(run_dir):
    path = Path(run_dir) / 'events.jsonl'
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def metric(run_dir, name):
    return {e['step']: e['value'] for e in events(run_dir) if e['type'] == 'metric' and e['name'] == name}


def eval_losses(run_dir, dataset='demo'):
    """Mean eval loss over the timestep quantiles, in the order they were measured."""
    return [e['value'] for e in events(run_dir) if e['type'] == 'metric' and e['name'] == f'eval/{dataset}/loss']


def last_status(run_dir):
    statuses = [e for e in events(run_dir) if e['type'] == 'status']
    return statuses[-1] if statuses else None


def wait_for(predicate, timeout=120, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def cache_items(adapter, count, text_len=5, text_step=1, seed=1):
    """Cache entries as the trainer reads them: latents [z, F', H', W'], text [tokens, D] (text_len + text_step * i
    tokens for item i), the i2v condition and CLIP tokens where the variant has them; random, seeded."""
    import torch
    g = torch.Generator().manual_seed(seed)
    t = adapter.transformers[0].config
    out = []
    for i in range(count):
        it = {'latents': torch.randn(adapter.variant.z_dim, 3, 8, 8, generator=g),
              'text_embeddings': torch.randn(text_len + text_step * i, t.text_dim, generator=g)}
        if adapter.uses_cond:
            it['y'] = torch.randn(adapter.variant.z_dim, 3, 8, 8, generator=g)
        if adapter.uses_clip:
            it['clip_context'] = torch.randn(257, t.image_dim, generator=g)
        out.append(it)
    return out
