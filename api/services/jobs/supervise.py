"""Watching jobs whose process runs: exit, heartbeats, the stop sequence; what an ended attempt means;
automatic resume of crashed, hung or interrupted training; re-attaching after a studio restart.

Used by the scheduler under its lock. Every decision is written to the job record first.
"""

import logging
import os
import signal
import time
from pathlib import Path

from . import launcher, procs
from .runs import newest_checkpoint
from .store import LIVE

log = logging.getLogger(__name__)
RETRYABLE = ('crashed', 'hung', 'interrupted')


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f'signal {-code}'


class Supervisor:
    def __init__(self, settings, paths, jobs, queue, tasks, monitor, clock=time.time):
        self.settings = settings
        self.paths = paths
        self.jobs = jobs
        self.queue = queue
        self.tasks = tasks
        self.monitor = monitor
        self.clock = clock
        self._children = {}            # job id -> Popen of the attempt we launched (None when re-attached)

    def adopt(self, job_id, proc):
        self._children[job_id] = proc

    def watch_all(self):
        now = self.clock()
        for job in self.jobs.all(states=LIVE):
            self.watch(job, now)

    # ---- recovery ------------------------------------------------------------------------------
    def recover(self):
        """After a (re)start: re-attach to jobs whose process still runs; settle the others."""
        for job in self.jobs.all(states=LIVE):
            att = job['attempts'][-1] if job['attempts'] else None
            if att is None or att.get('pid') is None:
                for p in procs.find_by_argument(str(self.paths.root / job['run_dir'])):   # launched just before a crash
                    procs.signal_job(p.pid, p.create_time(), procs.SIGNALS['SIGKILL'])
                self.finalize(job, None, recovering=True)
            elif procs.same_process(att['pid'], att.get('create_time')):
                log.info('re-attached to job %s (pid %s)', job['id'], att['pid'])
                self._children[job['id']] = None
            else:
                procs.signal_job(att['pid'], att.get('create_time'), procs.SIGNALS['SIGKILL'])
                self.finalize(job, None, recovering=True)

    # ---- watching running jobs ------------------------------------------------------------------
    def _alive(self, job):
        """(alive, exit code or None when the process was not started by this studio)."""
        att = job['attempts'][-1]
        proc = self._children.get(job['id'])
        if proc is not None and proc.pid == att.get('pid'):
            code = proc.poll()
            if code is None:
                return True, None
            self._children.pop(job['id'], None)
            return False, code
        return procs.same_process(att.get('pid'), att.get('create_time')), None

    def watch(self, job, now):
        alive, code = self._alive(job)
        if not alive:
            self.finalize(job, code)
            return
        att = job['attempts'][-1]
        if job['stop']:
            self._escalate(job, now)
        elif now - self._last_sign_of_life(job, att) > self.settings.heartbeat_timeout_s:
            procs.signal_job(att['pid'], att['create_time'], procs.SIGNALS['SIGKILL'])
            atts = job['attempts'][:-1] + [{**att, 'hung_at': now}]
            self.jobs.update(job['id'], attempts=atts,
                             message=f'no heartbeat for {self.settings.heartbeat_timeout_s:g}s: killed')

    def _last_sign_of_life(self, job, att):
        try:
            seen = os.stat(self.monitor.events_path(job)).st_mtime
        except OSError:
            seen = 0.0
        return max(att['started_at'], seen)

    def _escalate(self, job, now):
        """control file first; after stop_grace_s SIGTERM to the process group; after kill_grace_s SIGKILL."""
        stop, att = job['stop'], job['attempts'][-1]
        if stop['signal'] is None and now - stop['requested_at'] >= self.settings.stop_grace_s:
            sig, since = 'SIGTERM', now
        elif stop['signal'] == 'SIGTERM' and now - stop['signal_at'] >= self.settings.kill_grace_s:
            sig, since = 'SIGKILL', now
        else:
            return
        procs.signal_job(att['pid'], att['create_time'], procs.SIGNALS[sig])
        self.jobs.update(job['id'], stop={**stop, 'signal': sig, 'signal_at': since})

    # ---- the end of an attempt --------------------------------------------------------------------
    def _classify(self, job, att, code, recovering):
        state = self.monitor.state(job)
        final = (state.status or {}).get('state') if state.status_end > att.get('events_offset', 0) else None
        failure = state.failure if final == 'failed' else None
        if job['stop']:
            how = f' (after {job["stop"]["signal"]})' if job['stop'].get('signal') else ''
            return 'stopped', f'stopped on request{how}'
        if att.get('hung_at'):
            return 'hung', f'no heartbeat for {self.settings.heartbeat_timeout_s:g}s; killed'
        if final in ('done', 'stopped') and code in (0, None):
            return ('stopped', 'the trainer stopped') if final == 'stopped' else ('done', 'finished')
        if code == 0:       # e.g. the deepspeed runner exits 0 when its launcher is killed by a signal
            return 'crashed', 'the process exited without a final status (done or stopped)'
        if code == 2:
            return 'refused', failure or 'the trainer refused the configuration (exit code 2); see log.txt'
        if code is None and recovering:
            return 'interrupted', 'the process was gone when the studio started'
        if code is None:
            return 'crashed', failure or 'the process ended without a final status'
        how = f'exit code {code}' if code > 0 else f'killed by {_signal_name(code)}'
        return 'crashed', f'{how}: {failure}' if failure else how

    def finalize(self, job, code, recovering=False):
        now = self.clock()
        self._children.pop(job['id'], None)
        atts = list(job['attempts'])
        if atts:
            att = atts[-1]
            if att.get('pid'):
                procs.signal_job(att['pid'], att.get('create_time'), procs.SIGNALS['SIGKILL'])  # leftover ranks
            outcome, reason = self._classify(job, att, code, recovering)
            atts[-1] = {**att, 'ended_at': now, 'exit_code': code, 'outcome': outcome, 'reason': reason}
        else:
            outcome, reason = 'interrupted', 'the studio stopped before the job was launched'
        changes = {'attempts': atts, 'message': reason}
        task = self.tasks.find(job['task_id'])
        deleting = task is None or task.get('deleting')
        retry = outcome in RETRYABLE and launcher.resumable(job)
        if retry and not deleting and job['retries'] < self.settings.retry_limit:
            run_dir = self.paths.root / job['run_dir']
            resume = newest_checkpoint(run_dir) or job['resume_from']
            n = job['retries'] + 1
            where = f'resuming from {Path(resume).relative_to(self.paths.root)}' if resume else 'starting over (no checkpoint yet)'
            changes.update(state='queued', queued_at=now, retries=n, resume_from=resume, stop=None,
                           message=f'{outcome}: {reason}; automatic retry {n} of {self.settings.retry_limit}, {where}')
            self.jobs.update(job['id'], **changes)
            self.queue.add(job['id'], front=True)
            log.warning('job %s %s (%s); retry %d', job['id'], outcome, reason, n)
            return
        final = {'done': 'done', 'stopped': 'stopped', 'interrupted': 'interrupted'}.get(outcome, 'failed')
        if retry and self.settings.retry_limit and not deleting:
            changes['message'] = f'{outcome}: {reason}; gave up after {self.settings.retry_limit} automatic retries'
        self.jobs.update(job['id'], state=final, finished_at=now, **changes)
