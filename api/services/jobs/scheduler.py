"""The GPU-aware job queue: a background thread that starts queued jobs on free devices and has the
Supervisor (supervise.py) watch running ones and resume crashed, hung or interrupted training.

Routes never launch anything: they change records (queue a job, ask a stop) and this thread acts on
the next tick. Every change is written to the job record before anything is done about it, so a
studio killed at any instant finds on restart what it needs to re-attach or recover.

Queue policy (docs/architecture.md): `strict` starts jobs in queue order and lets nothing overtake a
job that is waiting for GPUs; `backfill` lets a later job start when it fits in what the head of the
queue cannot use. Automatic retries go to the front of the queue.
"""

import logging
import threading
import time
from pathlib import Path

from utils.fsutil import remove_stale_build_locks

from ..errors import BadRequest, Conflict, Invalid
from . import launcher
from .quota import user_limit
from .runs import newest_checkpoint
from .slurm import SlurmError
from .store import ACTIVE, LIVE
from .supervise import Supervisor
from .targets import Targets, target_of

log = logging.getLogger(__name__)
STORAGE_BACKOFF_MAX_S = 30.0        # longest wait between scheduler passes while the data root cannot be written


class Scheduler:
    def __init__(self, settings, paths, jobs, queue, tasks, inventory, monitor, ports, clock=time.time, targets=None):
        self.settings = settings
        self.paths = paths
        self.jobs = jobs
        self.queue = queue
        self.tasks = tasks
        self.inventory = inventory
        self.monitor = monitor
        self.ports = ports
        self.clock = clock
        self.lock = threading.RLock()
        self.targets = targets or Targets(settings, inventory)
        self.supervisor = Supervisor(settings, paths, jobs, queue, tasks, monitor, clock, self.targets)
        self._thread = None
        self._halt = threading.Event()
        self.hooks = []                 # called on every tick, under the lock (e.g. queueing previews)
        self.fault = None               # the OSError of the last failed tick (disk full, read-only), until one succeeds

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self):
        self._halt.clear()
        self._thread = threading.Thread(target=self._loop, name='odeo-scheduler', daemon=True)
        self._thread.start()

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self):
        """Stop the thread. Jobs keep running; the next studio re-attaches to them."""
        self._halt.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self):
        backoff = self.settings.scheduler_interval_s
        while not self._halt.is_set():
            try:
                self.tick()
                backoff = self.settings.scheduler_interval_s
            except OSError:             # recorded in self.fault (shown by /health); try again, less often
                backoff = min(STORAGE_BACKOFF_MAX_S, backoff * 2)
            except Exception:
                log.exception('scheduler tick failed')
            self._halt.wait(backoff)

    def tick(self):
        """One pass: write what a failed write left in memory, watch running jobs, start queued ones. A storage
        error stops the pass (nothing is launched onto a disk that cannot take its records) and is kept in
        `fault` until a pass succeeds."""
        try:
            self._tick()
        except OSError as e:
            if self.fault is None or self.fault.get('errno') != e.errno:
                log.error('scheduler: %s (%s); backing off', e, getattr(e, 'filename', None))
            self.fault = {'errno': e.errno, 'path': e.filename, 'reason': e.strerror or str(e), 'at': self.clock(),
                          'error': e}
            raise
        self.fault = None

    def _tick(self):
        with self.lock:
            self.jobs.flush()
            self.supervisor.watch_all()
            self._finish_deletions()
            for hook in self.hooks:
                try:
                    hook()
                except Exception:
                    log.exception('scheduler hook %s failed', getattr(hook, '__qualname__', hook))
            self._start_queued()

    def recover(self):
        """After a (re)start: re-attach to running jobs, settle dead ones, reload the queue order."""
        with self.lock:
            self.supervisor.recover()
            self.queue.load(self.jobs.all(states=('queued',)))

    # ---- starting queued jobs -------------------------------------------------------------------
    def held_devices(self):
        """device index -> job id, for jobs whose process runs (or is being started)."""
        return {d: j['id'] for j in self.jobs.all(states=LIVE) for d in j['attempts'][-1]['devices']}

    def usable_devices(self, snap):
        held = self.held_devices()
        limit = self.settings.gpu_memory_threshold_gib
        return [d.index for d in snap.devices if d.index not in held
                and (snap.mode == 'cpu' or (d.memory_used_gib or 0.0) < limit)]

    @staticmethod
    def pick(request, usable, existing):
        """Devices for a request, None if it must wait, or a message if it can never run here."""
        ids = request.get('gpu_ids')
        if ids:
            missing = [i for i in ids if i not in existing]
            if missing:
                return f'GPU(s) {missing} do not exist (this machine has {sorted(existing)})'
            return list(ids) if all(i in usable for i in ids) else None
        n = request['gpus']
        if n > len(existing):
            return f'needs {n} devices; this machine has {len(existing)}'
        return sorted(usable)[:n] if len(usable) >= n else None

    def _start_queued(self):
        snap = self.inventory.snapshot()
        usable = self.usable_devices(snap)
        existing = {d.index for d in snap.devices}
        blocked = False                 # strict: a job waits for devices; only device-free jobs (gpus 0) go on
        for jid in self.queue.order():
            job = self.jobs.find(jid)
            if job is None or job['state'] != 'queued':
                self.queue.remove(jid)
                continue
            task = self.tasks.find(job['task_id'])
            if (task is None and launcher.needs_task(job)) or (task and task.get('deleting')):
                self.cancel(jid, reason='task deleted')
                continue
            if target_of(job) == 'slurm':        # Slurm queues it: submitted at once, holds no device here
                self._launch(job, [], 'slurm')
                continue
            if blocked and job['request']['gpus']:
                continue
            limited, never = user_limit(self.settings, self.jobs, job)
            if limited:                 # over its owner's share: waits without holding up the queue
                if never:
                    self.queue.remove(jid)
                    self.jobs.update(jid, state='failed', finished_at=self.clock(), message=limited)
                continue
            got = self.pick(job['request'], usable, existing) if existing or not job['request']['gpus'] else None
            if isinstance(got, str):
                self.queue.remove(jid)
                self.jobs.update(jid, state='failed', finished_at=self.clock(), message=got)
                continue
            if got is None:
                if self.settings.queue_policy == 'strict' and not job.get('background'):
                    blocked = True      # background jobs (previews) wait without holding up the queue
                continue
            usable = [d for d in usable if d not in got]
            self._launch(job, got, snap.mode)

    def _launch(self, job, devices, mode):
        s = self.settings
        run_dir = self.paths.root / job['run_dir']
        missing = [p for p in ([s.trainer_script] + ([s.deepspeed_path] if s.launcher == 'deepspeed' else []))
                   if not Path(p).is_file()]
        if missing:
            self.queue.remove(job['id'])
            self.jobs.update(job['id'], state='failed', finished_at=self.clock(),
                             message=f'cannot launch: {", ".join(missing)} not found')
            return
        if mode == 'slurm':
            return self._submit(job, run_dir)
        if not self.supervisor.starting_up():      # nobody of ours is building: an old build lock is stale
            for lock in remove_stale_build_locks(s.torch_extensions_dir, s.build_lock_stale_s, self.clock()):
                log.warning('removed a stale build lock %s (older than %gs, no job starting up)', lock, s.build_lock_stale_s)
        in_use = {j['attempts'][-1].get('port') for j in self.jobs.all(states=LIVE)}
        port = self.ports.allocate(in_use)
        resume = job['resume_from']
        if target_of(job) == 'hosts':
            self.targets.hosts.write_hostfile(run_dir, job['request'].get('nodes', 1), job['request']['gpus'])
        command, env = launcher.build(s, job, mode, devices, port, run_dir, resume)
        att = self._new_attempt(job, run_dir, port, devices, mode, resume, command)
        job = self.jobs.update(job['id'], state='running', attempts=job['attempts'] + [att], stop=None)
        self.queue.remove(job['id'])
        header = f'job {job["id"]} attempt {att["n"]}' + (f', resuming from {resume}' if resume else '')
        try:
            proc, started = launcher.start(command, env, run_dir, Path(s.trainer_script).parent, header, s.job_nice)
        except OSError as e:
            atts = job['attempts'][:-1] + [{**att, 'outcome': 'failed', 'reason': str(e), 'ended_at': self.clock()}]
            self.jobs.update(job['id'], state='failed', finished_at=self.clock(), attempts=atts,
                             message=f'cannot launch: {e}')
            return
        self.supervisor.adopt(job['id'], proc)
        self.jobs.update(job['id'], attempts=job['attempts'][:-1] + [{**att, 'pid': proc.pid, 'create_time': started}])

    def _new_attempt(self, job, run_dir, port, devices, mode, resume, command, fresh=True):
        """The record of the next attempt; `fresh`: control files meant for an earlier attempt are removed."""
        events = self.monitor.events_path(job)
        if fresh:
            for f in (run_dir / 'control').glob('*'):
                f.unlink(missing_ok=True)
        return {'n': len(job['attempts']) + 1, 'started_at': self.clock(), 'ended_at': None, 'pid': None,
                'create_time': None, 'port': port, 'devices': list(devices), 'device_kind': mode,
                'resume_from': resume, 'command': command, 'exit_code': None, 'outcome': None, 'reason': None,
                'events_offset': events.stat().st_size if events.exists() else 0,
                'log_offset': (run_dir / 'log.txt').stat().st_size if (run_dir / 'log.txt').exists() else 0}

    def _submit(self, job, run_dir):
        """A Slurm attempt: the next run of a Slurm job that Slurm requeued (preemption, node failure), else a new
        `sbatch` of `<run>/slurm.sbatch`. The attempt is recorded before sbatch runs; a studio that dies between
        the two finds the Slurm job by its name (odeo-<job id>) at start and cancels it."""
        slurm, resume = self.targets.slurm, job['resume_from']
        try:
            again = slurm.active(job['slurm_job_id']) if job.get('slurm_job_id') else None
        except SlurmError as e:     # Slurm may still run the requeued job: a new sbatch could run it twice
            log.warning('job %s stays queued: cannot ask Slurm about job %s: %s', job['id'], job['slurm_job_id'], e)
            return
        in_use = {j['attempts'][-1].get('port') for j in self.jobs.all(states=LIVE)}
        port = self.ports.allocate(in_use)
        script = run_dir / 'slurm.sbatch'
        att = self._new_attempt(job, run_dir, port, [], 'slurm', resume, ['sbatch', str(script)], fresh=not again)
        att.update(target='slurm', slurm_job_id=again.id if again else None, slurm_restarts=again.restarts if again else 0,
                   slurm_state=again.state if again else 'SUBMITTING', slurm_reason=again.reason if again else None)
        job = self.jobs.update(job['id'], state='running', attempts=job['attempts'] + [att], stop=None)
        self.queue.remove(job['id'])
        if again:
            return
        if job.get('slurm_job_id'):     # a new batch job replaces it: the old one (if Slurm still has it) never runs beside it
            slurm.cli.cancel(job['slurm_job_id'])
        try:
            mode = 'cpu' if self.settings.gpu_backend == 'cpu' else 'gpu'       # the nodes': GPUs unless told not
            slurm.write_script(self.settings, job, run_dir, port, resume, mode)
            sid = slurm.cli.submit(script, cwd=run_dir)
        except (SlurmError, OSError, ValueError) as e:
            atts = job['attempts'][:-1] + [{**att, 'outcome': 'failed', 'reason': str(e), 'ended_at': self.clock()}]
            self.jobs.update(job['id'], state='failed', finished_at=self.clock(), attempts=atts,
                             message=f'cannot submit to Slurm: {e}')
            return
        with open(run_dir / 'log.txt', 'a') as f:
            f.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} job {job["id"]} attempt {att["n"]}: Slurm job {sid}\n')
        self.jobs.update(job['id'], slurm_job_id=sid,
                         attempts=job['attempts'][:-1] + [{**att, 'slurm_job_id': sid, 'slurm_state': 'PENDING'}])

    # ---- requests from users ------------------------------------------------------------------------
    def check_request(self, request):
        """Refuse at once a GPU request this machine can never satisfy."""
        self.targets.check(request)
        if target_of(request) != 'local':
            return
        snap = self.inventory.snapshot()
        existing = {d.index for d in snap.devices}
        if not existing:
            return
        got = self.pick(request, existing, existing)
        if isinstance(got, str):
            raise Invalid(got, field='gpu_ids' if request.get('gpu_ids') else 'gpus')

    def enqueue(self, job):
        with self.lock:
            self.jobs.save(job)
            self.queue.add(job['id'])

    def stop(self, job_id, save=False, immediate=False):
        """Queued: cancel. Running: drop control/stop (or save_quit) and escalate to signals later."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job['state'] == 'queued':
                return self.cancel(job_id)
            if job['state'] not in LIVE:
                raise Conflict(f'job {job_id} is {job["state"]}, not running', field='job_id')
            if job['state'] == 'stopping' and not immediate:
                return job
            now = self.clock()
            self._ask(job, 'save_quit' if save else 'stop')
            stop = {'requested_at': now, 'mode': 'save_quit' if save else 'stop', 'signal': None, 'signal_at': None}
            if immediate:
                self.targets.of(job).signal(job, 'SIGTERM')
                stop.update(signal='SIGTERM', signal_at=now)
            return self.jobs.update(job_id, state='stopping', stop=stop, message='stop requested')

    def _ask(self, job, request):
        """Drop a control file (save, save_quit, stop) for the trainer to act on at its next step."""
        control = self.paths.root / job['run_dir'] / 'control'
        control.mkdir(parents=True, exist_ok=True)
        (control / request).touch()

    def save_now(self, job_id):
        with self.lock:
            job = self.jobs.get(job_id)
            if job['state'] != 'running':
                raise Conflict(f'job {job_id} is {job["state"]}, not running', field='job_id')
            self._ask(job, 'save')
            return self.jobs.update(job_id, message='save requested')

    def cancel(self, job_id, reason='cancelled'):
        with self.lock:
            job = self.jobs.get(job_id)
            if job['state'] != 'queued':
                raise Conflict(f'job {job_id} is {job["state"]}; only queued jobs can be cancelled', field='job_id')
            self.queue.remove(job_id)
            return self.jobs.update(job_id, state='cancelled', finished_at=self.clock(), message=reason)

    def resume(self, job_id, request=None):
        """A stopped, failed or interrupted job: queue it again, resuming from its newest checkpoint."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job['state'] not in ('stopped', 'failed', 'interrupted', 'cancelled'):
                raise Conflict(f'job {job_id} is {job["state"]}; only stopped, failed or interrupted jobs resume',
                               field='job_id')
            self.assert_task_idle(job['task_id'])
            resume = newest_checkpoint(self.paths.root / job['run_dir']) or job['resume_from']
            if resume is None and job['attempts']:
                raise Conflict(f'job {job_id} has no checkpoint to resume from; start the task again', field='job_id')
            request = request or job['request']
            self.check_request(request)
            job = self.jobs.update(job_id, state='queued', queued_at=self.clock(), finished_at=None, retries=0,
                                   target=target_of(request),
                                   failures_in_row=0, port_retries=0, resume_from=resume, request=request, stop=None, message='resume requested')
            self.queue.add(job_id)
            return job

    def move(self, job_id, to=None, by=None):
        with self.lock:
            if self.jobs.get(job_id)['state'] != 'queued':
                raise Conflict(f'job {job_id} is not queued', field='job_id')
            return self.queue.move(job_id, to=to, by=by)

    def assert_task_idle(self, task_id):
        active = [j['id'] for j in self.jobs.all(task_id, states=ACTIVE, kind='train')]
        if active:
            raise Conflict(f'task {task_id} already has an active job ({active[0]}); stop it first', field='task_id')

    # ---- deleting tasks ---------------------------------------------------------------------------
    def delete_task(self, task_id, confirm=False):
        if confirm is not True:
            raise BadRequest('deleting a task removes its runs and LoRAs; repeat with confirm=true', field='confirm')
        with self.lock:
            self.tasks.mark_deleting(task_id)
            for job in self.jobs.all(task_id, states=ACTIVE):
                if job['state'] == 'queued':
                    self.cancel(job['id'], reason='task deleted')
                else:
                    self.stop(job['id'], immediate=True)
            return self._finish_deletions(only=task_id)

    def _finish_deletions(self, only=None):
        done = False
        for task in self.tasks.all():
            if not task.get('deleting') or (only and task['id'] != only):
                continue
            if self.jobs.all(task['id'], states=LIVE):
                continue
            for job in self.jobs.all(task['id']):
                self.monitor.forget(job['id'])
                self.queue.remove(job['id'])
            self.tasks.remove(task['id'])
            self.jobs.forget_task(task['id'])
            done = True
        return done
