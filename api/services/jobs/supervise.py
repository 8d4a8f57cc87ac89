"""Watching jobs whose process runs: exit, heartbeats, the stop sequence; what an ended attempt means;
automatic resume of crashed, hung or interrupted training; re-attaching after a studio restart.

Local (and `hosts`) jobs are processes of this machine, known by pid + start time. Slurm jobs are known by
their Slurm job id (targets.py): their state comes from one squeue reading per tick, signals are scancel, and
a requeue by Slurm (preemption, node failure) ends the attempt as `interrupted`; the retry policy then decides
whether that next run of the Slurm job is the job's next attempt or the Slurm job is cancelled.

Used by the scheduler under its lock. Every decision is written to the job record first.
"""

import logging
import os
import signal
import time
from pathlib import Path

from . import launcher, procs
from .runs import newest_checkpoint
from .slurm import SlurmError
from .store import LIVE
from .targets import Targets, target_of

log = logging.getLogger(__name__)
RETRYABLE = ('crashed', 'hung', 'interrupted')
STARTUP_STATES = ('starting', 'loading', 'caching')    # status states of the start-up phase (startup_timeout_s)
PORT_TAKEN = ('EADDRINUSE', 'address already in use')     # torch's TCPStore when the master port was taken
PORT_RETRY_LIMIT = 5                # relaunches on another port in a row before a taken port counts as a crash
LOG_TAIL_LINES = 15                 # lines of an attempt's log kept in its record (why it ended)
LOG_TAIL_BYTES = 16 * 1024


def log_tail(path, offset):
    """The last lines an attempt wrote to log.txt (from byte `offset`), as text."""
    try:
        with open(path, 'rb') as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(offset, size - LOG_TAIL_BYTES))
            text = f.read().decode('utf-8', errors='replace')
    except OSError:
        return ''
    lines = [line.rstrip() for line in text.replace('\r', '\n').splitlines() if line.strip()]
    return '\n'.join(lines[-LOG_TAIL_LINES:])


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f'signal {-code}'


class Supervisor:
    def __init__(self, settings, paths, jobs, queue, tasks, monitor, clock=time.time, targets=None):
        self.settings = settings
        self.paths = paths
        self.jobs = jobs
        self.queue = queue
        self.tasks = tasks
        self.monitor = monitor
        self.clock = clock
        self._children = {}            # job id -> Popen of the attempt we launched (None when re-attached)
        self.targets = targets or Targets(settings, None)

    def adopt(self, job_id, proc):
        self._children[job_id] = proc

    def watch_all(self):
        now = self.clock()
        live = self.jobs.all(states=LIVE)
        on_slurm = [j for j in live if target_of(j) == 'slurm']
        slurm_read = self.targets.slurm.refresh(on_slurm) if on_slurm else True
        for job in live:
            if target_of(job) != 'slurm':
                self.watch(job, now)
            elif slurm_read:            # Slurm could not be asked: leave its jobs as they are
                self.watch_slurm(job, now)

    # ---- recovery ------------------------------------------------------------------------------
    def recover(self):
        """After a (re)start: re-attach to jobs whose process still runs; settle the others."""
        for job in self.jobs.all(states=LIVE):
            att = job['attempts'][-1] if job['attempts'] else None
            if target_of(job) == 'slurm' and att is not None:
                self._recover_slurm(job, att)
            elif att is None or att.get('pid') is None:
                for p in procs.find_by_argument(str(self.paths.root / job['run_dir'])):   # launched just before a crash
                    procs.signal_job(p.pid, p.create_time(), procs.SIGNALS['SIGKILL'])
                self.finalize(job, None, recovering=True)
            elif procs.same_process(att['pid'], att.get('create_time')):
                log.info('re-attached to job %s (pid %s)', job['id'], att['pid'])
                self._children[job['id']] = None
            else:
                procs.signal_job(att['pid'], att.get('create_time'), procs.SIGNALS['SIGKILL'])
                self.finalize(job, None, recovering=True)

    def _recover_slurm(self, job, att):
        """Re-attach by Slurm job id (the next tick reads its state, also when it ended meanwhile); an attempt
        whose id was never recorded: cancel what was submitted under its name, and it is interrupted."""
        if att.get('slurm_job_id'):
            log.info('re-attached to job %s (Slurm job %s)', job['id'], att['slurm_job_id'])
            return
        try:
            self.targets.slurm.cancel_orphans(job)
        except SlurmError as e:        # Slurm unreachable: nothing more to do now
            log.warning('job %s: cannot look for its Slurm job: %s', job['id'], e)
        self.finalize(job, None, recovering=True)

    # ---- watching running jobs ------------------------------------------------------------------
    def _alive(self, job):
        """(alive, exit code or None when the process was not started by this studio)."""
        att = job['attempts'][-1]
        proc = self._children.get(job['id'])
        if proc is not None and proc.pid == att.get('pid'):
            code = proc.poll()         # kept (with its exit code) until finalize has recorded it
            return (True, None) if code is None else (False, code)
        return procs.same_process(att.get('pid'), att.get('create_time')), None

    def watch(self, job, now):
        alive, code = self._alive(job)
        if not alive:
            self.finalize(job, code)
            return
        self.watch_running(job, now)

    def watch_slurm(self, job, now):
        """A Slurm job: ended -> finalize with its exit code; requeued by Slurm -> the attempt was interrupted;
        pending -> its reason is recorded (no hang check: nothing runs); running -> heartbeats and stops as
        for a local job, from the moment it started running."""
        att = job['attempts'][-1]
        if not att.get('slurm_job_id'):
            return                      # being submitted (under the scheduler's lock: not seen here)
        sj = self.targets.slurm.poll(job)
        if sj is None or not sj.active:
            code = None if sj is None else (-sj.signal if sj.signal and not sj.exit_code else sj.exit_code)
            if sj is not None and sj.state not in ('COMPLETED', 'FAILED'):
                code = None             # cancelled, timed out, node failure ...: the state says it, not the code
            job = self._note_slurm(job, att, slurm_state=sj.state if sj else 'UNKNOWN')
            self.finalize(job, code)
            return
        if sj.restarts > att.get('slurm_restarts', 0) and sj.state != 'COMPLETING':
            job = self._note_slurm(job, att, slurm_state=sj.state, slurm_reason=sj.reason or None, slurm_requeued=True)
            self.finalize(job, None)
            return
        if sj.waiting:
            reason = sj.reason or None
            if job['stop']:             # nothing runs, nothing to save
                self.targets.slurm.signal(job, 'SIGKILL')
            elif (att.get('slurm_state'), att.get('slurm_reason')) != (sj.state, reason):
                self._note_slurm(job, att, slurm_state=sj.state, slurm_reason=reason)
            return
        if att.get('running_at') is None:
            job = self._note_slurm(job, att, slurm_state=sj.state, slurm_reason=None, running_at=now,
                                   slurm_nodes=sj.nodes)
        self.watch_running(job, now)

    def _note_slurm(self, job, att, **fields):
        return self.jobs.update(job['id'], attempts=job['attempts'][:-1] + [{**att, **fields}])

    def watch_running(self, job, now):
        """Stops and heartbeats of a job whose processes run (any target)."""
        att = job['attempts'][-1]
        limit, phase = self.silence_limit(job, att)
        if job['stop']:
            self._escalate(job, now)
        elif now - self._last_sign_of_life(job, att) > limit:
            self.targets.of(job).signal(job, 'SIGKILL')
            why = f'no sign of life for {limit:g}s {phase}'
            atts = job['attempts'][:-1] + [{**att, 'hung_at': now, 'hung_why': why}]
            self.jobs.update(job['id'], attempts=atts, message=f'{why}: killed')

    def silence_limit(self, job, att):
        """(seconds of silence allowed, phase in words): start-up (no status of this attempt yet, e.g. while
        DeepSpeed builds an op, or starting / loading / caching) is judged by startup_timeout_s, the rest by
        heartbeat_timeout_s."""
        state = self.monitor.state(job)
        current = (state.status or {}).get('state') if state.status_end > att.get('events_offset', 0) else None
        if current is None or current in STARTUP_STATES:
            limit = max(self.settings.startup_timeout_s, self.settings.heartbeat_timeout_s)
            return limit, f'while starting up ({current or "launching"})'
        return self.settings.heartbeat_timeout_s, f'while {current}'

    def starting_up(self):
        """Live jobs still in their start-up phase (they may be building an op right now)."""
        return [j for j in self.jobs.all(states=LIVE) if j['attempts'] and j['attempts'][-1].get('pid')
                and self.silence_limit(j, j['attempts'][-1])[1].startswith('while starting up')]

    def _last_sign_of_life(self, job, att):
        try:
            seen = os.stat(self.monitor.events_path(job)).st_mtime
        except OSError:
            seen = 0.0
        return max(att.get('running_at') or att['started_at'], seen)

    def _escalate(self, job, now):
        """control file first; after stop_grace_s SIGTERM to the process group; after kill_grace_s SIGKILL."""
        stop = job['stop']
        if stop['signal'] is None and now - stop['requested_at'] >= self.settings.stop_grace_s:
            sig, since = 'SIGTERM', now
        elif stop['signal'] == 'SIGTERM' and now - stop['signal_at'] >= self.settings.kill_grace_s:
            sig, since = 'SIGKILL', now
        else:
            return
        self.targets.of(job).signal(job, sig)
        self.jobs.update(job['id'], stop={**stop, 'signal': sig, 'signal_at': since})

    # ---- the end of an attempt --------------------------------------------------------------------
    def _classify(self, job, att, code, recovering):
        state = self.monitor.state(job)
        final = (state.status or {}).get('state') if state.status_end > att.get('events_offset', 0) else None
        failure = state.failure if final == 'failed' else None
        if job['stop']:
            how = f' (after {job["stop"]["signal"]})' if job['stop'].get('signal') else ''
            return 'stopped', f'stopped on request{how}'
        if att.get('slurm_requeued'):
            return 'interrupted', f'Slurm requeued job {att.get("slurm_job_id")} (preemption or node failure)'
        if att.get('hung_at'):
            return 'hung', f'{att.get("hung_why") or f"no heartbeat for {self.settings.heartbeat_timeout_s:g}s"}; killed'
        if final in ('done', 'stopped') and code in (0, None):
            return ('stopped', 'the trainer stopped') if final == 'stopped' else ('done', 'finished')
        if code == 0:       # e.g. the deepspeed runner exits 0 when its launcher is killed by a signal
            return 'crashed', 'the process exited without a final status (done or stopped)'
        if code == 2:
            return 'refused', failure or 'the trainer refused the configuration (exit code 2); see log.txt'
        if code not in (0, None) and att.get('log_tail') and any(m in att['log_tail'] for m in PORT_TAKEN):
            return 'port_taken', (f'master port {att.get("port")} was taken by another process before the trainer '
                                  'bound it (EADDRINUSE)')
        if code is None and att.get('slurm_state') and final not in ('done', 'stopped'):
            state = att['slurm_state']
            why = 'Slurm no longer knows it' if state == 'UNKNOWN' else f'it ended {state}'
            return ('interrupted' if state in ('PREEMPTED', 'NODE_FAIL') else 'crashed'), \
                f'Slurm job {att.get("slurm_job_id")}: {why}' + (f': {failure}' if failure else '')
        if code is None and recovering:
            return 'interrupted', 'the process was gone when the studio started'
        if code is None:
            return 'crashed', failure or 'the process ended without a final status'
        how = f'exit code {code}' if code > 0 else f'killed by {_signal_name(code)}'
        return 'crashed', f'{how}: {failure}' if failure else how

    def finalize(self, job, code, recovering=False):
        now = self.clock()
        atts = list(job['attempts'])
        step = (self.monitor.state(job).train or {}).get('step') or 0
        best = job.get('best_step') or 0
        if atts:
            att = atts[-1]
            if att.get('pid') and target_of(job) != 'slurm':
                procs.signal_job(att['pid'], att.get('create_time'), procs.SIGNALS['SIGKILL'])  # leftover ranks
            att = {**att, 'log_tail': log_tail(self.paths.root / job['run_dir'] / 'log.txt', att.get('log_offset', 0))}
            outcome, reason = self._classify(job, att, code, recovering)
            atts[-1] = {**att, 'ended_at': now, 'exit_code': code, 'outcome': outcome, 'reason': reason,
                        'step': step, 'progressed': step > best}
        else:
            outcome, reason = 'interrupted', 'the studio stopped before the job was launched'
        changes = {'attempts': atts, 'message': reason, 'best_step': max(step, best)}
        task = self.tasks.find(job['task_id'])
        deleting = task is None or task.get('deleting')
        if outcome == 'port_taken' and not deleting and job.get('port_retries', 0) < PORT_RETRY_LIMIT:
            self._requeue(job, now, changes, port_retries=job.get('port_retries', 0) + 1,
                          message=f'{reason}; launching again on another port (not counted as a failure)')
            self._children.pop(job['id'], None)
            return
        if outcome == 'port_taken':
            outcome = 'crashed'
        retry = outcome in RETRYABLE and launcher.resumable(job)
        # consecutive failures without progress: an attempt that trained past the run's best step starts again at 1
        failures = 1 if step > best else job.get('failures_in_row', job['retries']) + 1
        limit = self.settings.retry_limit
        if retry and not deleting and failures <= limit:
            n = job['retries'] + 1
            self._requeue(job, now, changes, retries=n, failures_in_row=failures, port_retries=0,
                          message=f'{outcome}: {reason}; automatic retry {n} ({failures} of {limit} failures in a row '
                                  f'without progress)')
            log.warning('job %s %s (%s); retry %d', job['id'], outcome, reason, n)
            self._children.pop(job['id'], None)
            return
        final = {'done': 'done', 'stopped': 'stopped', 'interrupted': 'interrupted'}.get(outcome, 'failed')
        if retry and limit and not deleting:
            changes['message'] = (f'{outcome}: {reason}; gave up after {limit} automatic retries without progress '
                                  f'(best step {max(step, best)})')
        if atts and atts[-1].get('slurm_requeued'):       # Slurm would run it again: no more retries
            self.targets.slurm.signal(job, 'SIGKILL')
        self.jobs.update(job['id'], state=final, finished_at=now, failures_in_row=failures if retry else 0, **changes)
        self._children.pop(job['id'], None)

    def _requeue(self, job, now, changes, message, **counters):
        """Queue the job again at the front, resuming from its newest checkpoint (none: its start point)."""
        resume = newest_checkpoint(self.paths.root / job['run_dir']) or job['resume_from']
        where = f'resuming from {Path(resume).relative_to(self.paths.root)}' if resume else 'starting over (no checkpoint yet)'
        try:
            self.jobs.update(job['id'], **{**changes, **counters, 'message': f'{message}, {where}'}, state='queued',
                             queued_at=now, resume_from=resume, stop=None)
        finally:                        # queued in memory even when the record could not be written yet
            self.queue.add(job['id'], front=True)
