"""How much this process's resident memory grew while a block ran, sampled every 5 ms on a thread:

    with peak_rss() as grown:
        work()
    assert grown.mib < 100
"""

import threading
import time
from contextlib import contextmanager


class Growth:
    mib = 0.0                       # peak resident memory during the block, less what it was before, in MiB


@contextmanager
def peak_rss(every=0.005):
    import psutil
    me, done, peak, grown = psutil.Process(), threading.Event(), [0], Growth()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(every)
    base = me.memory_info().rss
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        yield grown
    finally:
        done.set()
        watcher.join()
        grown.mib = max(0, peak[0] - base) / 2 ** 20
