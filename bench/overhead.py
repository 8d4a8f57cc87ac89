"""How much does our training step cost over the bare math?

Runs train.py (the deepspeed launcher, 1 process, pipeline of 1 stage: the whole machinery of a
real run: cached data read ahead, the pipeline engine, LoRA, AdamW, clipping, events, control
polling) for N steps on the tiny Wan2.1 t2v model and the demo dataset, and a plain PyTorch loop
doing the same math on the same batches in this process: collate, noise, the diffusers transformer
forward, MSE, backward, clip, AdamW. Both use one CPU thread. Prints median seconds per step and
the ratio (target: at most 1.15). The two are run in alternation `--rounds` times and the median of
the per-round ratios is reported, so load from other processes on the machine hits both alike.

    .venv/bin/python bench/overhead.py [--steps 80] [--warmup 10] [--rounds 3] [--model wan2.1-t2v-1.3b]
"""

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

from common import PlainLoop, setup


def ours(config, run_dir, steps):
    from tests.support.trainer import events, launch
    proc = launch(config, run_dir, procs=1, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f'train.py failed; see {run_dir}.log')
    times = [e['time'] for e in events(run_dir) if e['type'] == 'metric' and e['name'] == 'train/loss']
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
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args()
    os.environ['OMP_NUM_THREADS'] = '1'
    work, config = setup(args.model, epochs=1000, max_steps=args.steps, save_every_n_epochs=100000)
    rounds = []
    for r in range(args.rounds):
        mine = statistics.median(ours(config, work / f'run{r}', args.steps)[args.warmup:])
        base = statistics.median(plain(config, args.steps)[args.warmup:])
        rounds.append({'ours_s_per_step': round(mine, 5), 'plain_s_per_step': round(base, 5), 'ratio': round(mine / base, 3)})
    result = {'model': args.model, 'steps_timed_per_round': args.steps - args.warmup - 1, 'rounds': rounds,
              'median_ratio': statistics.median(r['ratio'] for r in rounds),
              'cpu': subprocess.run(['uname', '-m'], capture_output=True, text=True).stdout.strip(), 'threads': 1}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
