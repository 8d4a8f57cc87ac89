"""Job records: <data>/runs/<task-id>/<job-id>/job.json, one per run directory.

States:  queued -> running -> (stopping ->) done | stopped | failed  (a Slurm job is `running` from its
         submission; its attempt's `slurm_state` says PENDING (+ `slurm_reason`) or RUNNING)
         queued -> cancelled;  running -> queued again (automatic resume after a crash, hang or
         interruption, while retries last);  interrupted: the studio found it dead and will not retry.
"""

import secrets
import time

from ..accounts.acting import actor
from ..records import RecordIndex, clean_temp_files, read_record, updated, write_record

ACTIVE = ('queued', 'running', 'stopping')
LIVE = ('running', 'stopping')
FINAL = ('done', 'stopped', 'failed', 'cancelled', 'interrupted')


def new_job_id(now=None):
    return time.strftime('j%Y%m%d-%H%M%S', time.localtime(now)) + '-' + secrets.token_hex(2)


def new_job(job_id, task_id, run_dir_rel, request, origin, resume_from=None, kind='train'):
    now = time.time()
    return {
        'id': job_id,
        'task_id': task_id,
        'kind': kind,                  # train | infer | caption ... (api/services/jobs/launcher.py KINDS)
        'state': 'queued',
        'created_at': now,
        'updated_at': now,
        'queued_at': now,
        'finished_at': None,
        'run_dir': run_dir_rel,
        'request': request,            # {'gpus': n, 'gpu_ids': [..] or None} (+ target, nodes, slurm off this machine)
        'target': (request or {}).get('target') or 'local',   # local | slurm | hosts (jobs/targets.py)
        'slurm_job_id': None,          # the Slurm job of the latest attempt (target slurm)
        'origin': origin,              # {'action': start|restart|continue|copy, 'job_id', 'checkpoint'}
        'resume_from': resume_from,    # what the next attempt resumes from (absolute path) or None
        'attempts': [],
        'retries': 0,                  # automatic resumes since the last start/resume by a user
        'failures_in_row': 0,          # failed attempts in a row that trained no further than the best step so far
        'best_step': 0,                # the highest training step any attempt reported
        'port_retries': 0,             # relaunches in a row because the master port was taken (not failures)
        'stop': None,                  # {'requested_at', 'mode', 'signal', 'signal_at', 'reason'}
        'message': None,               # the latest thing a user should know (error, retry)
        'owner': actor(),              # the user who queued it (accounts mode; None outside a request)
    }


class JobStore(RecordIndex):
    kind = 'job'

    def __init__(self, paths):
        super().__init__()
        self.paths = paths
        self.unsaved = set()           # ids whose latest version is in memory only (a write failed): flush() retries
        self._by_task = {}             # task id -> {job id: record}: a task's jobs without a scan of every job

    def load(self):
        """Read every job record under runs/ (startup)."""
        jobs = {}
        for path in sorted(self.paths.runs.glob('*/*/job.json')):
            clean_temp_files(path.parent, 'job.json')
            rec = read_record(path)
            if rec and rec.get('id') == path.parent.name and rec.get('task_id') == path.parent.parent.name:
                jobs[rec['id']] = rec
        by_task = {}
        for rec in jobs.values():
            by_task.setdefault(rec['task_id'], {})[rec['id']] = rec
        with self._lock:
            self._records, self._by_task = jobs, by_task

    def all(self, task_id=None, states=None, kind=None):
        if task_id is None:
            jobs = list(self._records.values())
        else:
            jobs = list(self._by_task.get(task_id, {}).values())
        if states is not None:
            jobs = [j for j in jobs if j['state'] in states]
        if kind is not None:
            jobs = [j for j in jobs if j.get('kind', 'train') == kind]
        return sorted(jobs, key=lambda j: j['created_at'])

    def run_number(self, job):
        """A training run's number within its task (1 = its first run), as the UI says "Run 3"; None for
        other kinds."""
        ids = [j['id'] for j in self.all(job['task_id'], kind='train')]
        return ids.index(job['id']) + 1 if job['id'] in ids else None

    def latest(self, task_id, kind=None):
        jobs = self.all(task_id, kind=kind)
        return jobs[-1] if jobs else None

    def save(self, job):
        """Write the record; when the write fails (disk full, read-only) the record in memory still changes,
        so views and decisions stay true, flush() writes it later, and the OSError goes to the caller."""
        with self._lock:
            self._records[job['id']] = job
            self._by_task.setdefault(job['task_id'], {})[job['id']] = job
            try:
                write_record(self.paths.job_dir(job['task_id'], job['id']) / 'job.json', job)
            except OSError:
                self.unsaved.add(job['id'])
                raise
            self.unsaved.discard(job['id'])
        return job

    def flush(self):
        """Write the records a failed write left in memory only; raises the first OSError still failing."""
        with self._lock:
            for jid in sorted(self.unsaved):
                job = self._records.get(jid)
                if job is not None:
                    write_record(self.paths.job_dir(job['task_id'], jid) / 'job.json', job)
                self.unsaved.discard(jid)

    def update(self, job_id, **changes):
        with self._lock:
            return self.save(updated(self.get(job_id), **changes))

    def forget_task(self, task_id):
        with self._lock:
            for jid in self._by_task.pop(task_id, {}):
                self._records.pop(jid, None)
