"""The data path: how fast the cache fills, and whether reading it ever starves training.

1. Cache throughput: the demo dataset encoded by the tiny model's real VAE and UMT5 (decode, resize,
   encode, write shards), from scratch, in items per second.
2. Step time fed from the cache (memory-mapped shards, read ahead by the Prefetcher thread) against
   the same steps fed from item dicts already in memory. Target ratio: at most 1.05.

    .venv/bin/python bench/data.py [--steps 80] [--warmup 10]
"""

import argparse
import json
import os
import statistics
import time

from common import PlainLoop, setup


def cache_throughput(loop):
    from utils.cache import Cache
    items = loop.dataset.items
    cache = Cache.from_identity(loop.dataset, loop.adapter.cache_identity(), regenerate=True)
    loop.adapter.load_encoders('cpu')
    t0 = time.perf_counter()
    cache.build(items, loop.adapter.encode_media, loop.adapter.encode_text, batch_size=loop.cfg['caching_batch_size'])
    seconds = time.perf_counter() - t0
    loop.adapter.unload_encoders()
    return len(items), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=80)
    parser.add_argument('--warmup', type=int, default=10)
    args = parser.parse_args()
    os.environ['OMP_NUM_THREADS'] = '1'
    from utils.train_data import Prefetcher

    _, config = setup()
    loop = PlainLoop(config)
    n, seconds = cache_throughput(loop)
    reader = loop.reader()
    batches = loop.batches(args.steps)
    micro = [m for gb in batches for m in gb.for_rank(0)]
    in_memory = [[reader.get(i, c) for i, c in m] for m in micro]
    in_memory = [[{k: v.clone() for k, v in item.items()} for item in m] for m in in_memory]

    ga = loop.ga
    memory_times = [loop.step(s, in_memory[s * ga:(s + 1) * ga]) for s in range(args.steps)]
    stream = iter(Prefetcher(reader, micro, depth=2 * ga))
    cache_times = []
    for s in range(args.steps):
        t0 = time.perf_counter()                      # waiting for data counts against the cache
        loop.step(s, [next(stream) for _ in range(ga)])
        cache_times.append(time.perf_counter() - t0)
    cache_times = cache_times[args.warmup:]
    memory_times = memory_times[args.warmup:]
    result = {'cache_items': n, 'cache_seconds': round(seconds, 3), 'cache_items_per_s': round(n / seconds, 2),
              'step_from_cache_s': round(statistics.median(cache_times), 5),
              'step_from_memory_s': round(statistics.median(memory_times), 5),
              'ratio': round(statistics.median(cache_times) / statistics.median(memory_times), 3), 'threads': 1}
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
