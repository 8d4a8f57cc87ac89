"""The studio's services wired together from Settings, and the operations the routes call.

    studio = Studio(settings)                     # loads records, re-attaches to running jobs
    studio.start()                                # the scheduler thread (python -m api does this)
    job = studio.start_task('wan-20261123-01')    # validates, freezes the config, queues a job

Tests pass `gpu_provider=` (any object with `name` and `devices()`) to fake a machine's GPUs.
"""

import shutil
import tomllib
from pathlib import Path

from .data.datasets import DatasetCatalog
from .data.service import DataStudio
from .errors import Conflict, Invalid
from .inference.previews import PreviewWatcher
from .inference.service import InferenceService
from .jobs.gpus import GpuInventory
from .jobs.logs import read_log
from .jobs.monitor import JobMonitor
from .jobs.ports import PortAllocator
from .jobs.queue import JobQueue
from .jobs.runs import checkpoint_path, file_in_run, freeze, list_checkpoints, list_loras, newest_checkpoint
from .jobs.scheduler import Scheduler
from .jobs.store import LIVE, JobStore, new_job, new_job_id
from .paths import Paths
from .training.config_check import check
from .training.form import FIELDS, dump
from .training.models import ModelCatalog
from .training.tasks import TaskService, check_resources

BRIEF_PROGRESS = ('status', 'phase', 'step', 'total_steps', 'epoch', 'total_epochs', 'fraction', 'steps_per_s', 'eta_s',
                  'loss')


def _ids(indices):
    return ', '.join(str(i) for i in sorted(indices)) or 'none'


def _wanted(request, mode):
    """'2 free GPUs', 'GPUs 0, 3', '1 free CPU slot': what a queued request waits for."""
    unit = 'CPU slot' if mode == 'cpu' else 'GPU'
    if request.get('gpu_ids'):
        return f'{unit}{"s" if len(request["gpu_ids"]) > 1 else ""} {_ids(request["gpu_ids"])}'
    n = request['gpus']
    return f'{n} free {unit}{"s" if n > 1 else ""}'


class Studio:
    def __init__(self, settings, gpu_provider=None):
        self.settings = settings
        self.paths = Paths(settings.data_root)
        self.paths.make()
        for leftover in self.paths.trash.iterdir():       # deletions a crash interrupted
            shutil.rmtree(leftover, ignore_errors=True)
        self.models = ModelCatalog(settings.all_model_roots)
        self.datasets = DatasetCatalog(self.paths.datasets)
        self.inventory = GpuInventory(settings.gpu_backend, gpu_provider, settings.cpu_slots, settings.gpu_cache_s)
        self.tasks = TaskService(self.paths, settings, self.models, self.datasets, self.inventory)
        self.tasks.load()
        self.jobs = JobStore(self.paths)
        self.jobs.load()
        self.queue = JobQueue(self.paths.queue_file)
        self.monitor = JobMonitor(self.paths)
        self.ports = PortAllocator(*settings.port_range)
        self.scheduler = Scheduler(settings, self.paths, self.jobs, self.queue, self.tasks, self.inventory,
                                   self.monitor, self.ports)
        self.data = DataStudio(self)            # Data area: uploads, previews, captions, buckets, caption jobs
        self.inference = InferenceService(self.paths, settings, self.jobs, self.tasks, self.monitor, self.scheduler,
                                          self.inventory, self.models)
        self.previews = PreviewWatcher(self.inference, self.jobs, self.tasks)
        self.scheduler.hooks.append(self.previews.tick)
        self.scheduler.recover()

    def start(self):
        self.scheduler.start()

    def shutdown(self):
        self.scheduler.shutdown()

    # ---- tasks ------------------------------------------------------------------------------------
    def _check(self, main_text, dataset_text, task_id, job_dir, world_size):
        return check(main_text, dataset_text, data_root=self.paths.root, datasets_root=self.paths.datasets,
                     model_roots=self.settings.all_model_roots, catalog=self.models, world_size=world_size,
                     output_dir=self.paths.task_dir(task_id), dataset_file=job_dir / 'dataset.toml')

    def validate_task(self, task_id):
        task = self.tasks.get(task_id)
        res = task['resources']
        checked = self._check(task['toml']['main'], task['toml']['dataset'], task_id,
                              self.paths.task_dir(task_id) / '<job>', res['gpus'])
        return {'ok': not checked.issues, 'issues': checked.issues, 'variant': checked.variant,
                'world_size': res['gpus']}

    def _request(self, base, gpus=None, gpu_ids=None):
        if gpus is None and gpu_ids is None:
            return dict(base)
        return check_resources({'gpus': gpus, 'gpu_ids': gpu_ids})

    def _new_run(self, task_id, main_text, dataset_text, request, origin, resume_from=None):
        """Validate, freeze config.toml + dataset.toml into a new run directory, and queue the job.

        Validation runs outside the scheduler's lock (the first one imports the optimizer libraries);
        the task is checked again under the lock before anything is written."""
        self.scheduler.check_request(request)
        job_id = new_job_id()
        job_dir = self.paths.job_dir(task_id, job_id)
        checked = self._check(main_text, dataset_text, task_id, job_dir, request['gpus'])
        if checked.issues:
            first = checked.issues[0]
            raise Invalid(f'the configuration has {len(checked.issues)} problem(s); first: {first["key"]}: '
                          f'{first["message"]}', field=first['field'], issues=checked.issues)
        with self.scheduler.lock:
            self._assert_can_start(task_id)
            job_dir.mkdir(parents=True)
            freeze(job_dir, job_id, checked.main, checked.dataset)
            job = new_job(job_id, task_id, self.paths.relative(job_dir), request, origin, resume_from)
            self.scheduler.enqueue(job)
            return job

    def _assert_can_start(self, task_id):
        if self.tasks.get(task_id).get('deleting'):
            raise Conflict(f'task {task_id} is being deleted', field='task_id')
        self.scheduler.assert_task_idle(task_id)

    def start_task(self, task_id, gpus=None, gpu_ids=None):
        self._assert_can_start(task_id)
        task = self.tasks.get(task_id)
        request = self._request(task['resources'], gpus, gpu_ids)
        return self._new_run(task_id, task['toml']['main'], task['toml']['dataset'], request,
                             {'action': 'start', 'job_id': None, 'checkpoint': None})

    def _source(self, job_id):
        src = self.jobs.get(job_id)
        run = self.paths.root / src['run_dir']
        texts = [(run / name).read_text(encoding='utf-8') for name in ('config.toml', 'dataset.toml')]
        return src, run, texts

    def resume_job(self, job_id, gpus=None, gpu_ids=None):
        req = None if gpus is None and gpu_ids is None else self._request({}, gpus, gpu_ids)
        return self.scheduler.resume(job_id, req)

    def restart_job(self, job_id, checkpoint, gpus=None, gpu_ids=None):
        """A new job of the same task and config, resuming from a chosen checkpoint of this run."""
        src, run, (main_text, dataset_text) = self._source(job_id)
        self._assert_can_start(src['task_id'])
        ckpt = checkpoint_path(run, checkpoint)
        return self._new_run(src['task_id'], main_text, dataset_text, self._request(src['request'], gpus, gpu_ids),
                             {'action': 'restart', 'job_id': job_id, 'checkpoint': checkpoint}, str(ckpt))

    def continue_job(self, job_id, epochs, gpus=None, gpu_ids=None):
        """A finished (or stopped) run trained for more epochs: a new job resuming from its newest checkpoint."""
        src, run, (main_text, dataset_text) = self._source(job_id)
        if src['state'] not in ('done', 'stopped'):
            raise Conflict(f'job {job_id} is {src["state"]}; only a finished or stopped run can continue',
                           field='job_id')
        self._assert_can_start(src['task_id'])
        main = tomllib.loads(main_text)
        before = main.get('epochs', 1000)
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= before:
            raise Invalid(f"epochs must be a whole number above the run's {before}", field='epochs')
        ckpt = newest_checkpoint(run)
        if ckpt is None:
            raise Conflict(f'job {job_id} saved no checkpoint to continue from', field='job_id')
        main['epochs'] = epochs
        main.pop('max_steps', None)
        return self._new_run(src['task_id'], dump(main), dataset_text, self._request(src['request'], gpus, gpu_ids),
                             {'action': 'continue', 'job_id': job_id, 'checkpoint': Path(ckpt).name}, ckpt)

    def delete_task(self, task_id, confirm):
        deleted = self.scheduler.delete_task(task_id, confirm)
        return {'id': task_id, 'deleted': bool(deleted), 'deleting': not deleted}

    # ---- views ------------------------------------------------------------------------------------
    def job_brief(self, job, now=None):
        live = job['state'] in LIVE
        out = {k: job[k] for k in ('id', 'task_id', 'state', 'created_at', 'updated_at', 'finished_at', 'request',
                                   'retries', 'message', 'origin')}
        out['kind'] = job.get('kind', 'train')
        out['attempt'] = len(job['attempts'])
        out['devices'] = job['attempts'][-1]['devices'] if live else []
        out['progress'] = None
        if job['attempts']:
            p = self.monitor.progress(job, now)
            out['progress'] = {k: p[k] for k in BRIEF_PROGRESS}
        return out

    def job_view(self, job):
        out = dict(job)
        out['progress'] = self.monitor.progress(job) if job['attempts'] else None
        order = self.queue.order()
        out['queue_position'] = order.index(job['id']) if job['id'] in order else None
        return out

    def task_state(self, task, latest):
        if task.get('deleting'):
            return 'deleting'
        return latest['state'] if latest else 'draft'

    def task_summary(self, task, now=None):
        latest = self.jobs.latest(task['id'], kind='train')
        return {'id': task['id'], 'name': task['name'], 'created_at': task['created_at'],
                'updated_at': task['updated_at'], 'revision': task['revision'], 'resources': task['resources'],
                'state': self.task_state(task, latest),
                'latest_job': self.job_brief(latest, now) if latest else None,
                'best_lora': self.inference.best(task['id'])}

    def task_view(self, task):
        form, form_errors = self.tasks.form(task)
        jobs = self.jobs.all(task['id'])
        model = self.models.find(form['model_path']) if isinstance(form['model_path'], str) and form['model_path'] else None
        return {**task, 'state': self.task_state(task, self.jobs.latest(task['id'], kind='train')), 'form': form,
                'form_errors': form_errors, 'model': model, 'jobs': [self.job_brief(j) for j in jobs],
                'best_lora': self.inference.best(task['id'])}

    def form_schema(self):
        return [{'name': f.name, 'file': f.file, 'key': '.'.join(str(k) for k in f.key), 'doc': f.doc} for f in FIELDS]

    def queue_view(self):
        snap = self.inventory.snapshot()
        usable = self.scheduler.usable_devices(snap)
        existing = {d.index for d in snap.devices}
        out, blocked = [], None
        for pos, jid in enumerate(self.queue.order()):
            job = self.jobs.find(jid)
            if job is None:
                continue
            task = self.tasks.find(job['task_id']) or {}
            got = self.scheduler.pick(job['request'], usable, existing) if existing else None
            if blocked and self.settings.queue_policy == 'strict':
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
                        'resume_from': job['resume_from'], 'waiting_reason': why})
        return {'policy': self.settings.queue_policy, 'jobs': out}

    def gpu_view(self):
        snap = self.inventory.snapshot()
        held = self.scheduler.held_devices()
        limit = self.settings.gpu_memory_threshold_gib
        devices = []
        for d in snap.as_dict()['devices']:
            jid = held.get(d['index'])
            job = self.jobs.find(jid) if jid else None
            task = self.tasks.find(job['task_id']) if job else None
            outside = snap.mode == 'gpu' and not job and (d['memory_used_gib'] or 0.0) >= limit
            devices.append({**d, 'held_by': {'job_id': jid, 'task_id': job['task_id'], 'task_name': task and task['name']}
                            if job else None, 'busy_outside': outside, 'free': not job and not outside})
        return {'mode': snap.mode, 'provider': snap.provider, 'message': snap.message, 'read_at': snap.read_at,
                'memory_threshold_gib': limit if snap.mode == 'gpu' else None, 'devices': devices}

    # ---- run contents -------------------------------------------------------------------------------
    def run_dir(self, job):
        return self.paths.root / job['run_dir']

    def artifacts(self, job):
        run = self.run_dir(job)
        state = self.monitor.state(job)
        return {'loras': list_loras(run, state.artifacts), 'checkpoints': list_checkpoints(run),
                'events': list(state.artifacts.values())}

    def log(self, job, offset=0, max_bytes=None, tail=None):
        limit = min(max_bytes or self.settings.log_chunk_bytes, self.settings.log_chunk_bytes)
        return read_log(self.run_dir(job) / 'log.txt', offset, limit, tail)

    def file(self, job, rel):
        return file_in_run(self.run_dir(job), rel)
