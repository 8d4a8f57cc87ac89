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
from pathlib import Path

from common import PlainLoop, setup


def ours(config, run_dir, steps):
    from trainer_helpers import events, launch
    proc = launch(config, run_dir, procs=1, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f'train.py failed; see {run_dir}.log')
    times = [e['time'] for e in events(run_dir) if e['type'] == 'progress' and e.get('phase') == 'train']
    return [b - a for a, b in zip(times, times[1:])][:steps - 1]


def plain(config, steps):
    """The same math without DeepSpeed, the pipeline layers or the trainer: a textbook loop."""
    loop = PlainLoop(config)
    reader = loop.reader()                       # filled by the train.py run
    return [loop.step(n, [[reader.get(i, c) for i, c in ids] for ids in gb.for_rank(0)])
            for n, gb in enumerate(loop.batches(steps))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=80)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--model', default='wan2.1-t2v-1.3b')
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args()
    os.environ['OMP_NUM_THREADS'] = '1'
    work, config = setup(args.model, epochs=1000, max_steps=args.steps, save_every_n_epochs=100000)
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
