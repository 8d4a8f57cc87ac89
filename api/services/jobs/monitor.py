"""Per-job event tails, cached so that polling progress and metrics is cheap."""

import threading
import time

from .event_tail import EventTail, progress_view


class JobMonitor:
    def __init__(self, paths):
        self.paths = paths
        self._tails = {}
        self._lock = threading.Lock()

    def events_path(self, job):
        return self.paths.root / job['run_dir'] / 'events.jsonl'

    def state(self, job):
        with self._lock:
            tail = self._tails.get(job['id'])
            if tail is None:
                tail = self._tails[job['id']] = EventTail(self.events_path(job))
        return tail.refresh()

    def progress(self, job, now=None):
        return progress_view(self.state(job), now or time.time())

    def metrics(self, job, names=None, after=None):
        state = self.state(job)
        with self._tails[job['id']].lock:
            wanted = sorted(state.series) if names is None else [n for n in names if n in state.series]
            series = {n: state.series[n].after(after) for n in wanted}
            last = max((s.steps[-1] for s in state.series.values() if s.steps), default=None)
            return {'names': sorted(state.series), 'series': series, 'last_step': last}

    def forget(self, job_id):
        with self._lock:
            self._tails.pop(job_id, None)
