"""Task records: <data>/runs/<task-id>/task.json. A task is a training project; its jobs live beside it.

    {'id': 'wan-20261123-01', 'name': 'wan-20261123-01', 'created_at', 'updated_at', 'revision',
     'resources': {'gpus': 1, 'gpu_ids': None}, 'toml': {'main': '...', 'dataset': '...'},
     'copied_from': None, 'deleting': False}

Ids are `<prefix>-<yyyymmdd>-<nn>`, the next number of the day, never reused (not after a delete
either) and never change; the name starts equal to the id and can be changed (names are unique,
case-insensitive).
"""

import re
import shutil
import time

from ..accounts.acting import actor
from ..errors import BadRequest, Conflict
from ..jobs.resources import check_resources
from ..records import RecordIndex, clean_temp_files, read_record, updated, write_record
from .form import apply_form, default_texts, form_view, retarget_dataset

PREFIX_RE = re.compile(r'^[a-z][a-z0-9]{0,15}$')
MAX_NAME = 100
MAX_TOML = 256 * 1024


def check_name(name):
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME \
            or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest(f'name must be 1-{MAX_NAME} printable characters', field='name')
    return name.strip()


class TaskService(RecordIndex):
    kind = 'task'

    def __init__(self, paths, settings, models, datasets, inventory):
        super().__init__()
        self.paths = paths
        self.settings = settings
        self.models = models
        self.datasets = datasets
        self.inventory = inventory        # new drafts use float32 where jobs run on the CPU

    # ---- loading and lookup -------------------------------------------------------------------
    def load(self):
        clean_temp_files(self.paths.root, self.paths.task_ids.name)      # the id counter's, left by a crash
        tasks = {}
        for folder in sorted(p for p in self.paths.runs.iterdir() if p.is_dir()):
            clean_temp_files(folder, 'task.json')
            rec = read_record(folder / 'task.json')
            if rec and rec.get('id') == folder.name:
                tasks[rec['id']] = rec
            elif not any(folder.iterdir()):
                folder.rmdir()          # an id claimed by a create that never finished
        with self._lock:
            self._records = tasks

    def all(self):
        return sorted(self._records.values(), key=lambda t: t['created_at'])

    def _save(self, task):
        write_record(self.paths.task_file(task['id']), task)
        self._records[task['id']] = task
        return task

    def _name_taken(self, name, except_id=None):
        low = name.lower()
        return any(t['name'].lower() == low and t['id'] != except_id for t in self._records.values())

    # ---- create / copy / rename / edit / delete ---------------------------------------------------
    def _claim_id(self, prefix):
        """Next <prefix>-<yyyymmdd>-<nn> never handed out before. The highest number used per prefix and day
        is recorded in <data>/task_ids.json (atomically, before the id is returned), so a deleted task's id
        is never given again, after a restart too; the folder is created exclusively besides."""
        key = f'{prefix}-{time.strftime("%Y%m%d")}'
        used = read_record(self.paths.task_ids)
        used = used if isinstance(used, dict) else {}
        n = used.get(key) if isinstance(used.get(key), int) else 0
        while True:
            n += 1
            tid = f'{key}-{n:02d}'
            if tid in self._records or self._name_taken(tid):
                continue
            write_record(self.paths.task_ids, {**used, key: n})
            try:
                self.paths.task_dir(tid).mkdir(parents=True)
                return tid
            except FileExistsError:
                pass

    def create(self, name=None, prefix='wan', toml=None, resources=None, copied_from=None, dataset=None):
        """`dataset` (a folder name) picks the dataset of the draft; its own dataset.toml is the dataset draft."""
        if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
            raise BadRequest('prefix must be lowercase letters and digits, starting with a letter', field='prefix')
        if toml is None:
            model, datasets = self.models.default(), self.datasets.list()
            folder = str(self.datasets.folder(dataset)) if dataset else datasets[0]['path'] if datasets else ''
            main, dataset_text = default_texts(model['path'] if model else '', folder, cpu=self.inventory.mode == 'cpu')
            toml = {'main': main, 'dataset': dataset_text}
        toml = self._check_toml(toml, require_both=True)
        resources = check_resources(resources or {'gpus': 1, 'gpu_ids': None})
        with self._lock:
            if name is not None:
                name = check_name(name)
                if self._name_taken(name):
                    raise Conflict(f'a task named {name!r} exists', field='name')
            tid = self._claim_id(prefix)
            now = time.time()
            task = {'id': tid, 'name': name or tid, 'prefix': prefix, 'created_at': now, 'updated_at': now, 'revision': 1,
                    'resources': resources, 'toml': toml, 'copied_from': copied_from, 'deleting': False,
                    'owner': actor()}
            return self._save(task)

    def copy(self, task_id, name=None):
        src = self.get(task_id)
        return self.create(name=name, prefix=src.get('prefix', 'wan'), toml=dict(src['toml']),
                           resources=dict(src['resources']), copied_from=src['id'])

    def patch(self, task_id, name=None, form=None, toml=None, if_revision=None):
        """Rename and/or save the draft (form fields or TOML texts). Cheap: no validation here."""
        with self._lock:
            task = self.get(task_id)
            if task.get('deleting'):
                raise Conflict(f'task {task_id!r} is being deleted', field='task_id')
            if if_revision is not None and if_revision != task['revision']:
                raise Conflict(f'task {task_id!r} changed meanwhile (revision {task["revision"]}, '
                               f'you edited {if_revision}); reload it', field='if_revision')
            changes = {}
            if name is not None:
                name = check_name(name)
                if self._name_taken(name, except_id=task_id):
                    raise Conflict(f'a task named {name!r} exists', field='name')
                changes['name'] = name
            texts = dict(task['toml'])
            resources = dict(task['resources'])
            if toml is not None:
                texts.update(self._check_toml(toml))
            if form is not None:
                if not isinstance(form, dict):
                    raise BadRequest('form must be an object of field: value', field='form')
                texts['main'], texts['dataset'], resources = apply_form(
                    texts['main'], texts['dataset'], resources, form,
                    datasets_root=self.paths.datasets, model_roots=self.settings.all_model_roots)
            changes['toml'] = texts
            changes['resources'] = check_resources(resources)
            return self._save(updated(task, revision=task['revision'] + 1, **changes))

    def retarget_dataset(self, old, new):
        """After a dataset folder was renamed: drafts that read it now name the new folder (runs already
        made keep their frozen copies). Returns the ids of the tasks changed."""
        changed = []
        with self._lock:
            for task in self.all():
                text = retarget_dataset(task['toml']['dataset'], old.resolve(), new.resolve(), self.paths.root)
                if text is not None and not task.get('deleting'):
                    self._save(updated(task, revision=task['revision'] + 1, toml={**task['toml'], 'dataset': text}))
                    changed.append(task['id'])
        return changed

    def mark_deleting(self, task_id):
        with self._lock:
            return self._save(updated(self.get(task_id), deleting=True))

    def remove(self, task_id):
        """Move the task folder (record, runs, LoRAs) to trash in one rename, then delete it."""
        with self._lock:
            self.get(task_id)
            self.paths.trash.mkdir(parents=True, exist_ok=True)
            gone = self.paths.trash / f'{task_id}.{time.time_ns()}'
            self.paths.task_dir(task_id).rename(gone)
            del self._records[task_id]
        shutil.rmtree(gone, ignore_errors=True)

    # ---- views ------------------------------------------------------------------------------------
    def form(self, task):
        return form_view(task['toml']['main'], task['toml']['dataset'], task['resources'], self.paths.datasets)

    # ---- checks -----------------------------------------------------------------------------------
    @staticmethod
    def _check_toml(toml, require_both=False):
        if not isinstance(toml, dict) or set(toml) - {'main', 'dataset'}:
            raise BadRequest('toml must be an object with "main" and/or "dataset" text', field='toml')
        for key in ('main', 'dataset') if require_both else toml:
            v = toml.get(key)
            if not isinstance(v, str):
                raise BadRequest(f'toml.{key} must be text', field=f'toml.{key}')
            if len(v.encode()) > MAX_TOML:
                raise BadRequest(f'toml.{key} is larger than {MAX_TOML} bytes', field=f'toml.{key}')
        return {k: toml[k] for k in ('main', 'dataset') if k in toml}
