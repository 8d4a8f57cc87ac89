"""How much does our training step cost over the bare math?

Runs train.py (the deepspeed launcher, 1 process, pipeline of 1 stage: the whole machinery of a
real run: cached data read ahead, the pipeline engine, LoRA, AdamW, clipping, events, control
polling) for N steps on the tiny Wan2.1 t2v model and the demo dataset, and a plain PyTorch loop
doing the same math on the same batches in this process: collate, noise, the diffusers transformer
forward, MSE, backward, clip, AdamW. Both use one CPU thread. Prints median seconds per step and
the ratio (target: at most 1.15).

    .venv/bin/python bench/overhead.py [--steps 80] [--warmup 10] [--model wan2.1-t2v-1.3b]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tests'))


def ours(config, run_dir, steps):
    from trainer_helpers import events, launch
    proc = launch(config, run_dir, procs=1, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f'train.py failed; see {run_dir}.log')
    times = [e['time'] for e in events(run_dir) if e['type'] == 'progress' and e.get('phase') == 'train']
    return [b - a for a, b in zip(times, times[1:])][:steps - 1]


def plain(config, steps):
    """The same math without DeepSpeed, the pipeline layers or the trainer: a textbook loop."""
    import torch

    from models.wan.adapter import WanAdapter
    from utils.cache import Cache
    from utils.config import load_dataset_config, load_main_config
    from utils.dataset import build_dataset, epoch_batches, micro_batch_size_fn

    torch.set_num_threads(1)
    cfg = load_main_config(config)
    adapter = WanAdapter(cfg)
    ds = build_dataset(load_dataset_config(cfg['dataset']), adapter.media_spec, cfg['video_clip_mode'], seed=cfg['seed'])
    reader = Cache.from_identity(ds, adapter.cache_identity()).reader(ds.items)     # filled by the train.py run
    (transformer,) = adapter.build_diffusion_model(seed=cfg['seed'])
    params = [p for p in transformer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg['optimizer']['lr'], weight_decay=0.0)
    ga = cfg['gradient_accumulation_steps']
    fn = micro_batch_size_fn(cfg['micro_batch_size_per_gpu'])
    batches = []
    epoch = 1
    while len(batches) < steps:
        batches += epoch_batches(ds, fn, 1, ga, cfg['seed'], epoch)
        epoch += 1
    durations = []
    for step, gb in enumerate(batches[:steps]):
        t0 = time.perf_counter()
        for micro, ids in enumerate(gb.for_rank(0)):
            batch = adapter.collate([reader.get(i, c) for i, c in ids])
            g = torch.Generator().manual_seed(step * 1000 + micro)
            (x_t, timestep, text, expert), (target, mask) = adapter.prepare_inputs(batch, g)
            pred = transformer(x_t, timestep, text, return_dict=False)[0]
            loss = torch.nn.functional.mse_loss(pred.float(), target.float()) / ga
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg['gradient_clipping'])
        opt.step()
        opt.zero_grad(set_to_none=True)
        durations.append(time.perf_counter() - t0)
    return durations


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=80)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--model', default='wan2.1-t2v-1.3b')
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ['OMP_NUM_THREADS'] = '1'

    from models.wan.tiny import write_tiny_model
    from tools.make_demo_dataset import make_demo_dataset
    from trainer_helpers import config_text, write_config

    work = Path(tempfile.mkdtemp(prefix='odeo-overhead-'))
    model = write_tiny_model(work / 'models', args.model, layouts=('official',))['official']
    dataset = make_demo_dataset(work / 'demo')
    config = write_config(work, config_text(model, dataset, work / 'out', epochs=1000, max_steps=args.steps,
                                            save_every_n_epochs=100000))
    mine = ours(config, work / 'run', args.steps)[args.warmup:]
    base = plain(config, args.steps)[args.warmup:]
    ours_s, plain_s = statistics.median(mine), statistics.median(base)
    result = {'model': args.model, 'steps_timed': len(mine), 'ours_s_per_step': round(ours_s, 5),
              'plain_s_per_step': round(plain_s, 5), 'ratio': round(ours_s / plain_s, 3),
              'cpu': subprocess.run(['uname', '-m'], capture_output=True, text=True).stdout.strip(), 'threads': 1}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
