"""The jobs area in one place for the routes and the other areas: the job store, queue, monitor, GPU
inventory and scheduler it was given, and every view of a job (brief, full, queue, GPUs, run contents).

    jobs = JobService(settings, paths, store, queue, monitor, inventory, scheduler, tasks)
    jobs.stop('j20261123-101500-ab12', save=True)     # actions return the job's view, as the routes send it
"""

import re

from .logs import read_log, read_log_before
from .quota import user_limit
from .resources import check_resources
from .runs import SAVE_DIR_RE, expert_from_name, file_in_run, list_checkpoints, list_loras
from .slurm import WAITING
from .store import LIVE
from .targets import target_of

BRIEF_PROGRESS = ('status', 'phase', 'step', 'total_steps', 'epoch', 'total_epochs', 'fraction', 'steps_per_s', 'eta_s',
                  'loss', 'warnings')


def _ids(indices):
    return ', '.join(str(i) for i in sorted(indices)) or 'none'


def slurm_fields(job):
    """target, nodes and, on Slurm, the job id, its state and why it waits (for the job and queue views)."""
    out = {'target': target_of(job), 'nodes': job['request'].get('nodes', 1)}
    if out['target'] == 'slurm':
        att = job['attempts'][-1] if job['attempts'] else {}
        waiting = job['state'] in LIVE and att.get('slurm_state') in WAITING
        reason = att.get('slurm_reason')
        out.update(slurm_job_id=job.get('slurm_job_id'), slurm_state=att.get('slurm_state'),
                   waiting_reason=f'Slurm job {job.get("slurm_job_id")} pending' + (f': {reason}' if reason else '')
                   if waiting else None)
    return out


def _wanted(request, mode):
    """'2 free GPUs', 'GPUs 0, 3', '1 free CPU slot': what a queued request waits for."""
    unit = 'CPU slot' if mode == 'cpu' else 'GPU'
    if request.get('gpu_ids'):
        return f'{unit}{"s" if len(request["gpu_ids"]) > 1 else ""} {_ids(request["gpu_ids"])}'
    n = request['gpus']
    return f'{n} free {unit}{"s" if n > 1 else ""}'


class JobService:
    def __init__(self, settings, paths, store, queue, monitor, inventory, scheduler, tasks):
        self.settings = settings
        self.paths = paths
        self.store = store
        self.queue = queue
        self.monitor = monitor
        self.inventory = inventory
        self.scheduler = scheduler
        self.tasks = tasks                  # task names in the queue and GPU views

    # ---- actions on one job ---------------------------------------------------------------------
    def stop(self, job_id, save=False):
        return self.view(self.scheduler.stop(job_id, save=save))

    def save_now(self, job_id):
        return self.view(self.scheduler.save_now(job_id))

    def cancel(self, job_id):
        return self.view(self.scheduler.cancel(job_id))

    def resume(self, job_id, gpus=None, gpu_ids=None):
        base = self.store.get(job_id)['request']
        req = None if gpus is None and gpu_ids is None else check_resources({**base, 'gpus': gpus, 'gpu_ids': gpu_ids})
        return self.view(self.scheduler.resume(job_id, req))

    def move(self, job_id, to=None, by=None):
        self.scheduler.move(job_id, to=to, by=by)
        return self.queue_view()

    # ---- views ------------------------------------------------------------------------------------
    def brief(self, job, now=None):
        live = job['state'] in LIVE
        out = {k: job[k] for k in ('id', 'task_id', 'state', 'created_at', 'updated_at', 'finished_at', 'request',
                                   'retries', 'message', 'origin')}
        out['owner'] = job.get('owner')
        out['kind'] = job.get('kind', 'train')
        out['run'] = self.store.run_number(job)
        out['failures_in_row'] = job.get('failures_in_row', 0)
        out['attempt'] = len(job['attempts'])
        out['devices'] = job['attempts'][-1]['devices'] if live else []
        out.update(slurm_fields(job))
        out['progress'] = None
        if job['attempts']:
            p = self.monitor.progress(job, now)
            out['progress'] = {k: p[k] for k in BRIEF_PROGRESS}
        return out

    def view(self, job):
        out = dict(job)
        out['progress'] = self.monitor.progress(job) if job['attempts'] else None
        order = self.queue.order()
        out['queue_position'] = order.index(job['id']) if job['id'] in order else None
        return out

    def queue_view(self):
        snap = self.inventory.snapshot()
        usable = self.scheduler.usable_devices(snap)
        existing = {d.index for d in snap.devices}
        out, blocked = [], None
        for pos, jid in enumerate(self.queue.order()):
            job = self.store.find(jid)
            if job is None:
                continue
            task = self.tasks.find(job['task_id']) or {}
            got = self.scheduler.pick(job['request'], usable, existing) if existing else None
            limited = user_limit(self.settings, self.store, job)[0]
            if target_of(job) == 'slurm':
                why = 'submitted to Slurm on the next scheduler tick'
            elif limited:
                why = limited
            elif blocked and self.settings.queue_policy == 'strict':
                why = f'behind {blocked} (strict queue order)'
            elif got is None:
                why = f'waiting for {_wanted(job["request"], snap.mode)}; usable now: {_ids(usable)}'
                if not job.get('background'):          # background jobs (previews) hold up nobody
                    blocked = blocked or jid
            elif isinstance(got, str):
                why = got
            else:
                why = 'starts on the next scheduler tick'
                usable = [d for d in usable if d not in got]
            out.append({'position': pos, 'job_id': jid, 'task_id': job['task_id'], 'task_name': task.get('name'),
                        'request': job['request'], 'queued_at': job['queued_at'], 'retries': job['retries'],
                        'resume_from': job['resume_from'], 'waiting_reason': why, 'owner': job.get('owner'),
                        **slurm_fields(job)})
        for job in self.store.all(states=LIVE):          # submitted to Slurm, waiting in its queue
            if target_of(job) == 'slurm' and (view := slurm_fields(job))['waiting_reason']:
                task = self.tasks.find(job['task_id']) or {}
                out.append({'position': None, 'job_id': job['id'], 'task_id': job['task_id'],
                            'task_name': task.get('name'), 'request': job['request'], 'queued_at': job['queued_at'],
                            'retries': job['retries'], 'resume_from': job['resume_from'], **view})
        return {'policy': self.settings.queue_policy, 'jobs': out}

    def gpu_view(self):
        snap = self.inventory.snapshot()
        held = self.scheduler.held_devices()
        limit = self.settings.gpu_memory_threshold_gib
        devices = []
        for d in snap.as_dict()['devices']:
            jid = held.get(d['index'])
            job = self.store.find(jid) if jid else None
            task = self.tasks.find(job['task_id']) if job else None
            outside = snap.mode == 'gpu' and not job and (d['memory_used_gib'] or 0.0) >= limit
            devices.append({**d, 'held_by': {'job_id': jid, 'task_id': job['task_id'], 'task_name': task and task['name']}
                            if job else None, 'busy_outside': outside, 'free': not job and not outside})
        return {'mode': snap.mode, 'provider': snap.provider, 'message': snap.message, 'read_at': snap.read_at,
                'memory_threshold_gib': limit if snap.mode == 'gpu' else None, 'devices': devices}

    def targets_view(self):
        """The compute targets tasks may choose and what each offers (sinfo, ssh + nvidia-smi, this machine)."""
        return self.scheduler.targets.view()

    # ---- run contents -------------------------------------------------------------------------------
    def run_dir(self, job):
        return self.paths.root / job['run_dir']

    def artifacts(self, job):
        run = self.run_dir(job)
        state = self.monitor.state(job)
        return {'loras': list_loras(run, state.artifacts), 'checkpoints': list_checkpoints(run),
                'events': list(state.artifacts.values())}

    def log(self, job, offset=0, max_bytes=None, tail=None, before=None):
        limit = min(max_bytes or self.settings.log_chunk_bytes, self.settings.log_chunk_bytes)
        if before is not None:
            return read_log_before(self.run_dir(job) / 'log.txt', before, limit)
        return read_log(self.run_dir(job) / 'log.txt', offset, limit, tail)

    def file(self, job, rel):
        return file_in_run(self.run_dir(job), rel)

    def download_name(self, job, rel):
        """The name a saved LoRA downloads under: <task>-run<N>-epoch<N>[-<expert>].safetensors (the file on
        disk keeps its own name); None for other files."""
        parts = rel.split('/')
        if len(parts) < 2 or not SAVE_DIR_RE.match(parts[0]) or not rel.endswith('.safetensors'):
            return None
        task = self.tasks.find(job['task_id']) or {}
        run = self.store.run_number(job)
        expert = expert_from_name(rel)
        bits = [task.get('name') or job['task_id'], f'run{run}' if run else job['id'], parts[0], expert]
        return safe_file_name('-'.join(b for b in bits if b) + '.safetensors')


def safe_file_name(name):
    """A file name every system saves as is: letters, digits, '.', '_' and '-' (others become '_')."""
    clean = re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('._') or 'download'
    return clean[:200]
