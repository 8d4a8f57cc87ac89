"""Resource history for the GPUs area: every `interval` seconds one sample of each GPU (utilisation, memory,
temperature, from the GPU inventory) and of the machine (CPU %, RAM, from psutil), kept in a ring buffer.

The buffer lives in the studio's memory only (`keep` samples: an hour at 5 s): a view of the recent past,
lost when the studio restarts, never a record. Jobs' own metrics are in their events.jsonl.

    sampler = ResourceSampler(inventory, interval=5.0, keep=720)
    sampler.start() ... sampler.history(after=t)   # {'interval_s', 'keep', 'mode', 'samples': [...]}
"""

import threading
import time
from collections import deque

import psutil

GIB = 1024 ** 3


class ResourceSampler:
    def __init__(self, inventory, interval=5.0, keep=720, clock=time.time):
        self.inventory = inventory
        self.interval = interval
        self.clock = clock
        self.samples = deque(maxlen=max(1, keep))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def sample(self):
        snap = self.inventory.snapshot()
        mem = psutil.virtual_memory()
        s = {'t': round(self.clock(), 3), 'cpu_pct': psutil.cpu_percent(interval=None),
             'ram_used_gib': round((mem.total - mem.available) / GIB, 2), 'ram_total_gib': round(mem.total / GIB, 2),
             'gpus': [{'index': d.index, 'utilization_pct': d.utilization_pct, 'memory_used_gib': d.memory_used_gib,
                       'memory_total_gib': d.memory_total_gib, 'temperature_c': d.temperature_c}
                      for d in snap.devices] if snap.mode == 'gpu' else []}
        with self._lock:
            self.samples.append(s)
        return s

    def history(self, after=None):
        if not self.samples:                # no thread (tests), or the first request: one sample now
            self.sample()
        with self._lock:
            out = [s for s in self.samples if after is None or s['t'] > after]
        return {'interval_s': self.interval, 'keep': self.samples.maxlen, 'mode': self.inventory.mode,
                'stored': 'memory', 'samples': out}

    def start(self):
        if self._thread or self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name='resource-sampler', daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:           # a failed read leaves a gap in the chart, never stops the sampler
                pass
            self._stop.wait(self.interval)

    def shutdown(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None
