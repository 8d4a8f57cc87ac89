"""The Models area's operations: the models under the model roots with what uses them, queueing `download`
jobs (api/jobs/download.py), and deleting a model no queued or running job needs.

    models = ModelService(settings, paths, jobs, tasks, catalog)
    models.list()                                        # catalog entries + used_by, running downloads
    models.queue_download({'variant': 'wan2.1-t2v-1.3b', 'layout': 'official'})
    models.delete('Wan2.1-T2V-1.3B', confirm=True)       # 409 while a job uses it

A download lands in <root>/.downloads/<name>/ (hidden from the catalog) and is renamed to <root>/<name>/
once every file is verified, with its manifest .odeo-model.json. Download jobs belong to no task: their
run directories are <data>/runs/models/<job-id>/ and need no device (request gpus 0).
"""

import os
import shutil
import time
from pathlib import Path

from ..errors import BadRequest, Conflict, NotFound, PathRefused
from ..jobs.launcher import module_command, register_kind
from ..jobs.store import ACTIVE, new_job, new_job_id
from ..paths import check_id, resolve_path
from ..training.form import parse
from . import hub
from .catalog import read_manifest

TASK_ID = 'models'
STAGING = '.downloads'


def download_command(settings, job, mode, devices, port, run_dir, resume_from):
    """python -m api.jobs.download, with the hub endpoint and token of the settings in its environment."""
    argv, env = module_command('api.jobs.download')(settings, job, mode, devices, port, run_dir, resume_from)
    if settings.hf_endpoint:
        env['HF_ENDPOINT'] = settings.hf_endpoint
    if settings.hf_token:
        env['HF_TOKEN'] = settings.hf_token
    return argv, env


def model_paths(doc):
    """The *_path values of a main config's [model] table."""
    model = (doc or {}).get('model') or {}
    return [v for k, v in model.items() if k.endswith('_path') and isinstance(v, str) and v]


class ModelService:
    def __init__(self, settings, paths, jobs, tasks, catalog):
        self.settings = settings
        self.paths = paths
        self.jobs = jobs                        # the jobs area (JobService)
        self.tasks = tasks
        self.catalog = catalog
        register_kind('download', download_command, resumable=True, needs_task=False)

    # ---- what uses a model ------------------------------------------------------------------------------
    def _job_paths(self, job):
        kind = job.get('kind', 'train')
        run = self.paths.root / job['run_dir']
        if kind == 'train':
            try:
                doc = parse((run / 'config.toml').read_text(encoding='utf-8'), 'main')[0]
            except OSError:
                return []
            return [resolve_path(p, run) for p in model_paths(doc)]
        if kind in ('infer', 'eval'):
            return [Path(p) for p in (job.get('infer', {}).get('model') or {}).values() if isinstance(p, str)]
        if kind == 'caption':
            return [Path(job['caption']['model_path'])]
        if kind == 'download':
            return [Path(job['download']['folder'])]
        return []

    def users(self, folder):
        """Queued or running jobs reading from `folder`, and tasks whose draft names it."""
        here = Path(folder).resolve()
        hit = lambda p: p == here or here in p.parents  # noqa: E731
        jobs = [{'job_id': j['id'], 'task_id': j['task_id'], 'kind': j.get('kind', 'train'), 'state': j['state']}
                for j in self.jobs.store.all(states=ACTIVE) if any(hit(p.resolve()) for p in self._job_paths(j))]
        tasks = []
        for t in self.tasks.all():
            doc = parse(t['toml']['main'], 'main')[0] if t.get('toml') else None
            if any(hit(resolve_path(p, self.paths.root)) for p in model_paths(doc)):
                tasks.append({'task_id': t['id'], 'name': t['name']})
        return {'jobs': jobs, 'tasks': tasks}

    # ---- views ----------------------------------------------------------------------------------------
    def list(self):
        models = [{**m, 'used_by': self.users(m['path'])} for m in self.catalog.list()]
        downloads = [self.download_view(j) for j in self.jobs.store.all(TASK_ID, kind='download')]
        return {'roots': [str(r) for r in self.settings.all_model_roots], 'models': models,
                'taehv': self.catalog.taehvs(),
                'downloads': downloads[::-1][:20], 'choices': hub.choices(),
                'hub': {'endpoint': self.endpoint(), 'token_set': bool(self.settings.hf_token)}}

    def download_view(self, job):
        state = self.jobs.monitor.state(job) if job['attempts'] else None
        d = job['download']
        return {'id': job['id'], 'state': job['state'], 'kind': 'download', 'created_at': job['created_at'],
                'finished_at': job['finished_at'], 'message': job['message'],
                'download': {k: d[k] for k in ('name', 'root', 'folder', 'variant', 'layout', 'total_bytes')}
                | {'sources': [{k: s[k] for k in ('repo', 'revision', 'commit')} for s in d['sources']]},
                'status': dict(state.status) if state and state.status else None,
                'progress': dict(state.train) if state and state.train else None}

    # ---- downloads ------------------------------------------------------------------------------------
    def endpoint(self):
        from huggingface_hub import constants
        return (self.settings.hf_endpoint or os.environ.get('HF_ENDPOINT') or constants.ENDPOINT).rstrip('/')

    def hub_api(self):
        from huggingface_hub import HfApi
        return HfApi(endpoint=self.endpoint(), token=self.settings.hf_token or None)

    def _root(self, value):
        roots = self.settings.all_model_roots
        if value in (None, ''):
            return roots[0]
        match = [r for r in roots if str(r) == str(value)]
        if not match:
            raise PathRefused(f'root {value!r} is not a model root ({", ".join(str(r) for r in roots)})', field='root')
        return match[0]

    def _target(self, root, name, given, plan):
        """The folder name a download lands in: the given one, or the default name, or beside an existing
        download of another revision as <name>-<commit[:7]>."""
        head = plan['sources'][0]['commit']
        existing = read_manifest(root / name)
        if not (root / name).exists():
            return name
        same = existing and existing.get('sources') and existing['sources'][0].get('commit') == head
        if same:
            raise Conflict(f'{root / name} already holds {plan["sources"][0]["repo"]} at {head[:12]}', field='name')
        if given:
            raise Conflict(f'{root / name} already exists; choose another name', field='name')
        beside = f'{name}-{head[:7]}'
        if (root / beside).exists():
            raise Conflict(f'{root / beside} already exists', field='name')
        return beside

    def queue_download(self, body):
        if not isinstance(body, dict):
            raise BadRequest('expected a JSON object', field=None)
        ch = hub.choice(body.get('variant'), body.get('layout'))
        revision = body.get('revision')
        if revision is not None and (not isinstance(revision, str) or not revision.strip()):
            raise BadRequest('revision must be a branch, tag or commit', field='revision')
        given = body.get('name')
        if given is not None:
            check_id(given, 'name')
        root = self._root(body.get('root'))
        root.mkdir(parents=True, exist_ok=True)
        plan = hub.make_plan(ch, self.hub_api(), revision)       # asks the hub: outside the scheduler lock
        scheduler = self.jobs.scheduler
        with scheduler.lock:
            name = self._target(root, given or ch.default_name, given, plan)
            folder, staging = root / name, root / STAGING / name
            for j in self.jobs.store.all(TASK_ID, states=ACTIVE, kind='download'):
                if j['download']['folder'] == str(folder):
                    raise Conflict(f'{folder} is already being downloaded by job {j["id"]}', field='name')
            hub.check_space(root, plan['total_bytes'] - staged_bytes(staging, plan))
            job_id = new_job_id()
            run_dir = self.paths.job_dir(TASK_ID, job_id)
            (run_dir / 'control').mkdir(parents=True)
            job = new_job(job_id, TASK_ID, self.paths.relative(run_dir), {'gpus': 0, 'gpu_ids': None},
                          {'action': 'download', 'job_id': None, 'checkpoint': None}, kind='download')
            job['download'] = {**plan, 'name': name, 'root': str(root), 'folder': str(folder),
                               'staging': str(staging), 'endpoint': self.endpoint()}
            scheduler.enqueue(job)
        return self.download_view(job)

    # ---- deleting -------------------------------------------------------------------------------------
    def find(self, name, root=None):
        for m in self.catalog.list():
            if m['name'] == name and (root is None or m['root'] == str(root)):
                return m
        raise NotFound(f'no model {name!r} under the model roots', field='name')

    def delete(self, name, confirm, root=None):
        if confirm is not True:
            raise BadRequest('deleting a model removes its files; repeat with confirm=true', field='confirm')
        model = self.find(name, root)
        folder = Path(model['path'])
        with self.jobs.scheduler.lock:
            used = self.users(folder)['jobs']
            if used:
                names = ', '.join(f'{u["kind"]} job {u["job_id"]} of {u["task_id"]} ({u["state"]})' for u in used)
                raise Conflict(f'model {name!r} is used by {names}; stop or cancel it first', field='name')
            gone = folder.parent / f'.deleting-{folder.name}-{int(time.time())}'
            os.replace(folder, gone)                     # one rename: the catalog never sees half a model
        shutil.rmtree(gone, ignore_errors=True)
        self.catalog.refresh()
        return {'name': name, 'path': str(folder), 'deleted': True}


def staged_bytes(staging: Path, plan):
    """Bytes of the plan already on disk in the staging folder (finished files and .part files)."""
    have = 0
    for s in plan['sources']:
        for f in s['files']:
            for p in (staging / f['path'], staging / (f['path'] + '.part')):
                if p.is_file():
                    have += min(p.stat().st_size, f['size'] or 0)
    return have
