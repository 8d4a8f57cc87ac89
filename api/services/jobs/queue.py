"""The order of queued jobs, persisted in <data>/queue.json (written atomically on every change).

The job records are the truth about which jobs are queued; on load the file is reconciled with
them (records queued but missing from the file go to the end in creation order), so a crash between
writing a job and writing the queue loses nothing.
"""

import threading

from ..errors import BadRequest, NotFound
from ..records import clean_temp_files, read_record, write_record


class JobQueue:
    def __init__(self, path):
        self.path = path
        self._order = []
        self._lock = threading.RLock()

    def load(self, queued_jobs):
        clean_temp_files(self.path.parent, self.path.name)
        saved = (read_record(self.path) or {}).get('order', [])
        queued = {j['id']: j for j in queued_jobs}
        order = [jid for jid in dict.fromkeys(saved) if jid in queued]
        order += [j['id'] for j in sorted(queued_jobs, key=lambda j: j['queued_at']) if j['id'] not in order]
        with self._lock:
            self._order = order
            self._write()

    def _write(self):
        write_record(self.path, {'order': self._order})

    def order(self):
        return list(self._order)

    def add(self, job_id, front=False):
        with self._lock:
            if job_id in self._order:
                self._order.remove(job_id)
            self._order.insert(0 if front else len(self._order), job_id)
            self._write()

    def remove(self, job_id):
        with self._lock:
            if job_id in self._order:
                self._order.remove(job_id)
                self._write()

    def move(self, job_id, to=None, by=None):
        """Move to position `to` (0 = first; clamped) or by `by` places (negative = up)."""
        with self._lock:
            if job_id not in self._order:
                raise NotFound(f'job {job_id!r} is not queued', field='job_id')
            here = self._order.index(job_id)
            if (to is None) == (by is None):
                raise BadRequest('give exactly one of "to" (a position) or "by" (places to move)', field='to')
            target = to if to is not None else here + by
            target = max(0, min(len(self._order) - 1, int(target)))
            self._order.pop(here)
            self._order.insert(target, job_id)
            self._write()
            return target
