"""The training area's operations: validate a task, start it, restart or continue one of its runs,
delete it, and the task views the routes send.

    training = TrainingService(settings, paths, jobs, tasks, models, best_lora=inference.best)
    training.start('wan-20261123-01')      # validates, freezes the config into a new run, queues a `train` job

Every run is a new job with its own run directory holding the frozen config.toml and dataset.toml.
"""

import tomllib
from pathlib import Path

from utils.fsutil import atomic_write_text

from ..errors import Conflict, Invalid
from ..jobs.launcher import register_kind
from ..jobs.resources import check_resources
from ..jobs.runs import checkpoint_path, newest_checkpoint
from ..jobs.store import new_job, new_job_id
from ..models.catalog import model_sources
from .config_check import check
from .form import FIELDS, dump
from .launch import taehv_command, train_batch, train_command
from .taehv import taehv_config

HEADER = '# Frozen by ODEO Studio for job {job}; the trainer rewrites it with every default filled in.\n'


def freeze(run_dir: Path, job_id, main_doc, dataset_doc, extra_files=None):
    """Write dataset.toml (and the eval dataset files) then config.toml (which points at them) into a new
    run directory."""
    for name, doc in (extra_files or {}).items():
        atomic_write_text(run_dir / name, HEADER.format(job=job_id) + dump(doc))
    atomic_write_text(run_dir / 'dataset.toml', HEADER.format(job=job_id) + dump(dataset_doc))
    atomic_write_text(run_dir / 'config.toml', HEADER.format(job=job_id) + dump(main_doc))


def _request(base, gpus=None, gpu_ids=None):
    if gpus is None and gpu_ids is None:
        return dict(base)
    return check_resources({**base, 'gpus': gpus, 'gpu_ids': gpu_ids})


class TrainingService:
    def __init__(self, settings, paths, jobs, tasks, models, best_lora):
        self.settings = settings
        self.paths = paths
        self.jobs = jobs                    # the jobs area (JobService)
        self.tasks = tasks
        self.models = models
        self.best_lora = best_lora          # task id -> the LoRA marked best in the Inference studio, or None
        register_kind('train', train_command, resumable=True, batch=train_batch)
        register_kind('taehv', taehv_command, resumable=True)

    # ---- checking and queueing runs ---------------------------------------------------------------
    def _check(self, main_text, dataset_text, task_id, job_dir, world_size):
        return check(main_text, dataset_text, data_root=self.paths.root, datasets_root=self.paths.datasets,
                     model_roots=self.settings.all_model_roots, catalog=self.models, world_size=world_size,
                     output_dir=self.paths.task_dir(task_id), dataset_file=job_dir / 'dataset.toml')

    def validate(self, task_id):
        task = self.tasks.get(task_id)
        res = task['resources']
        checked = self._check(task['toml']['main'], task['toml']['dataset'], task_id,
                              self.paths.task_dir(task_id) / '<job>', res['gpus'])
        return {'ok': not checked.issues, 'issues': checked.issues, 'variant': checked.variant,
                'world_size': res['gpus']}

    def _new_run(self, task_id, main_text, dataset_text, request, origin, resume_from=None):
        """Validate, freeze config.toml + dataset.toml into a new run directory, and queue the job.

        Validation runs outside the scheduler's lock (the first one imports the optimizer libraries);
        the task is checked again under the lock before anything is written."""
        scheduler = self.jobs.scheduler
        scheduler.check_request(request)
        job_id = new_job_id()
        job_dir = self.paths.job_dir(task_id, job_id)
        checked = self._check(main_text, dataset_text, task_id, job_dir, request['gpus'])
        if checked.issues:
            first = checked.issues[0]
            raise Invalid(f'the configuration has {len(checked.issues)} problem(s); first: {first["key"]}: '
                          f'{first["message"]}', field=first['field'], issues=checked.issues)
        with scheduler.lock:
            self._assert_can_start(task_id)
            job_dir.mkdir(parents=True)
            freeze(job_dir, job_id, checked.main, checked.dataset, checked.extra_files)
            job = new_job(job_id, task_id, self.paths.relative(job_dir), request, origin, resume_from)
            job['model_sources'] = model_sources(self.models, checked.main)     # hub repo + commit it trains on
            scheduler.enqueue(job)
        return self.jobs.view(job)

    def _assert_can_start(self, task_id):
        if self.tasks.get(task_id).get('deleting'):
            raise Conflict(f'task {task_id} is being deleted', field='task_id')
        self.jobs.scheduler.assert_task_idle(task_id)

    def _source(self, job_id):
        src = self.jobs.store.get(job_id)
        run = self.paths.root / src['run_dir']
        texts = [(run / name).read_text(encoding='utf-8') for name in ('config.toml', 'dataset.toml')]
        return src, run, texts

    # ---- what the routes call -----------------------------------------------------------------------
    def start(self, task_id, gpus=None, gpu_ids=None):
        self._assert_can_start(task_id)
        task = self.tasks.get(task_id)
        request = _request(task['resources'], gpus, gpu_ids)
        return self._new_run(task_id, task['toml']['main'], task['toml']['dataset'], request,
                             {'action': 'start', 'job_id': None, 'checkpoint': None})

    def restart(self, job_id, checkpoint, gpus=None, gpu_ids=None):
        """A new job of the same task and config, resuming from a chosen checkpoint of this run."""
        src, run, (main_text, dataset_text) = self._source(job_id)
        self._assert_can_start(src['task_id'])
        ckpt = checkpoint_path(run, checkpoint)
        return self._new_run(src['task_id'], main_text, dataset_text, _request(src['request'], gpus, gpu_ids),
                             {'action': 'restart', 'job_id': job_id, 'checkpoint': checkpoint}, str(ckpt))

    def continue_run(self, job_id, epochs, gpus=None, gpu_ids=None):
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
        return self._new_run(src['task_id'], dump(main), dataset_text, _request(src['request'], gpus, gpu_ids),
                             {'action': 'continue', 'job_id': job_id, 'checkpoint': Path(ckpt).name}, ckpt)

    def start_taehv(self, task_id, taehv=None, settings=None, gpus=None, gpu_ids=None):
        """Queue a `taehv` job beside the task's LoRA runs: a TAEHV trained on the task's dataset against its
        model's VAE (config built by training/taehv.py; `taehv` = the [taehv] table, `settings` = top-level keys)."""
        task = self.tasks.get(task_id)
        if task.get('deleting'):
            raise Conflict(f'task {task_id} is being deleted', field='task_id')
        request = _request(task['resources'], gpus, gpu_ids)
        scheduler = self.jobs.scheduler
        scheduler.check_request(request)
        job_id = new_job_id()
        job_dir = self.paths.job_dir(task_id, job_id)
        text, issues = taehv_config(task['toml']['main'], taehv or {}, settings or {}, job_dir,
                                    self.paths.task_dir(task_id), request['gpus'])
        if issues:
            raise Invalid(f'the TAEHV configuration has {len(issues)} problem(s); first: {issues[0]}',
                          field='taehv', issues=[i.to_dict() for i in issues])
        with scheduler.lock:
            job_dir.mkdir(parents=True)
            atomic_write_text(job_dir / 'dataset.toml', HEADER.format(job=job_id) + task['toml']['dataset'])
            atomic_write_text(job_dir / 'config.toml', HEADER.format(job=job_id) + text)
            job = new_job(job_id, task_id, self.paths.relative(job_dir), request,
                          {'action': 'taehv', 'job_id': None, 'checkpoint': None}, kind='taehv')
            scheduler.enqueue(job)
        return self.jobs.view(job)

    def delete(self, task_id, confirm):
        deleted = self.jobs.scheduler.delete_task(task_id, confirm)
        return {'id': task_id, 'deleted': bool(deleted), 'deleting': not deleted}

    # ---- views ------------------------------------------------------------------------------------
    @staticmethod
    def _state(task, latest):
        if task.get('deleting'):
            return 'deleting'
        return latest['state'] if latest else 'draft'

    def summary(self, task, now=None):
        latest = self.jobs.store.latest(task['id'], kind='train')
        return {'id': task['id'], 'name': task['name'], 'created_at': task['created_at'],
                'updated_at': task['updated_at'], 'revision': task['revision'], 'resources': task['resources'],
                'state': self._state(task, latest),
                'latest_job': self.jobs.brief(latest, now) if latest else None,
                'best_lora': self.best_lora(task['id'])}

    def view(self, task):
        form, form_errors = self.tasks.form(task)
        jobs = self.jobs.store.all(task['id'])
        model = self.models.find(form['model_path']) if isinstance(form['model_path'], str) and form['model_path'] else None
        return {**task, 'state': self._state(task, self.jobs.store.latest(task['id'], kind='train')), 'form': form,
                'form_errors': form_errors, 'model': model, 'jobs': [self.jobs.brief(j) for j in jobs],
                'best_lora': self.best_lora(task['id'])}

    def form_schema(self):
        return [{'name': f.name, 'file': f.file, 'key': '.'.join(str(k) for k in f.key), 'doc': f.doc} for f in FIELDS]
