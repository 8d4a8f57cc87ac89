"""Per-job event tails, cached so that polling progress and metrics is cheap."""

import threading
import time

from .event_tail import EventTail, progress_view
from .store import LIVE

SETTLE_S = 60.0


class JobMonitor:
    def __init__(self, paths):
        self.paths = paths
        self._tails = {}
        self._settled = set()           # jobs read once since they ended: their events file no longer grows
        self._lock = threading.Lock()

    def events_path(self, job):
        return self.paths.root / job['run_dir'] / 'events.jsonl'

    def state(self, job):
        """The folded events of the job. A job that ended over SETTLE_S ago (a shared filesystem may show its
        last lines late) is read once more and then served as it is, without a look at the file: the task list
        asks this of every task on every poll."""
        jid = job['id']
        ended = job['state'] not in LIVE and time.time() - (job.get('finished_at') or float('inf')) > SETTLE_S
        with self._lock:
            tail = self._tails.get(jid)
            if tail is None:
                tail = self._tails[jid] = EventTail(self.events_path(job))
            elif ended and jid in self._settled:
                return tail.state
        state = tail.refresh()
        with self._lock:
            (self._settled.add if ended else self._settled.discard)(jid)
        return state

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
            self._settled.discard(job_id)
