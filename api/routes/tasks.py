"""Tasks: create, list, edit the draft (form or TOML), copy, rename, validate, start, delete."""

import time

from flask import Blueprint, Response, request

from ..http import body, doc, field, gpu_request, query_bool, studio
from ..services.training.toml_io import export_text, import_texts

bp = Blueprint('tasks', __name__, url_prefix='/api/v1')


@bp.get('/tasks')
@doc('List tasks, each with its state and latest job', response='TaskList')
def list_tasks():
    s, now = studio(), time.time()
    return {'tasks': [s.training.summary(t, now) for t in s.tasks.all()]}


@bp.post('/tasks')
@doc('Create a task; the name defaults to <prefix>-<yyyymmdd>-<nn>', body='TaskCreate', response='Task', status=201)
def create_task():
    d, s = body(), studio()
    task = s.tasks.create(name=field(d, 'name', str), prefix=field(d, 'prefix', str, 'wan'),
                          toml=field(d, 'toml', dict), resources=field(d, 'resources', dict),
                          dataset=field(d, 'dataset', str))
    if field(d, 'form', dict):
        task = s.tasks.patch(task['id'], form=d['form'])
    return s.training.view(task), 201


@bp.post('/tasks/import')
@doc("Create a task from a diffusion-pipe config: its main TOML text and, optionally, its dataset TOML text "
     "(output_dir and dataset are left out; without a dataset TOML the default dataset draft is used)",
     body='TaskImport', response='Task', status=201)
def import_task():
    d, s = body(), studio()
    main, dataset = import_texts(field(d, 'main', str, required=True), field(d, 'dataset', str))
    task = s.tasks.create(name=field(d, 'name', str))
    task = s.tasks.patch(task['id'], toml={'main': main, **({'dataset': dataset} if dataset else {})})
    return s.training.view(task), 201


@bp.get('/tasks/<task_id>/toml/<which>')
@doc("Download one file of a task's draft: which = main (<task>-config.toml, naming the dataset file) or "
     'dataset (<task>-dataset.toml)', binary=True)
def export_toml(task_id, which):
    name, text = export_text(studio().tasks.get(task_id), which)
    return Response(text, mimetype='application/toml',
                    headers={'Content-Disposition': f'attachment; filename="{name}"'})


@bp.get('/tasks/<task_id>')
@doc('A task: record, form view of its draft, model, jobs', response='Task')
def get_task(task_id):
    s = studio()
    return s.training.view(s.tasks.get(task_id))


@bp.patch('/tasks/<task_id>')
@doc('Rename and/or save the draft (form fields or TOML texts); no validation, cheap', body='TaskPatch', response='Task')
def patch_task(task_id):
    d, s = body(), studio()
    task = s.tasks.patch(task_id, name=field(d, 'name', str), form=field(d, 'form', dict),
                         toml=field(d, 'toml', dict), if_revision=field(d, 'if_revision', int))
    return s.training.view(task)


@bp.delete('/tasks/<task_id>')
@doc('Delete a task and its runs (needs confirm=true; running jobs are stopped first)', response='DeleteResult',
     query={'confirm': 'boolean'})
def delete_task(task_id):
    confirm = query_bool('confirm') or (request.is_json and body().get('confirm') is True)
    result = studio().training.delete(task_id, confirm=confirm)
    return result, 200 if result['deleted'] else 202


@bp.post('/tasks/<task_id>/copy')
@doc('Copy a task (config and GPU choice; no jobs)', body='TaskCopy', response='Task', status=201)
def copy_task(task_id):
    s = studio()
    return s.training.view(s.tasks.copy(task_id, name=field(body(), 'name', str))), 201


@bp.post('/tasks/<task_id>/validate')
@doc('Validate the draft with the trainer schema; issues name the form field', response='Validation')
def validate_task(task_id):
    return studio().training.validate(task_id)


@bp.post('/tasks/<task_id>/start')
@doc('Queue a training job: freezes config.toml + dataset.toml into a new run directory',
     body='GpuRequest', response='Job', status=202)
def start_task(task_id):
    return studio().training.start(task_id, *gpu_request(body())), 202


@bp.post('/tasks/<task_id>/taehv')
@doc("Queue a `taehv` job: a TAEHV trained on the task's dataset against its Wan model's VAE (docs/taehv.md)",
     body='TaehvStart', response='Job', status=202)
def start_taehv(task_id):
    d = body()
    return studio().training.start_taehv(task_id, field(d, 'taehv', dict), field(d, 'settings', dict),
                                         *gpu_request(d)), 202


@bp.get('/tasks/<task_id>/jobs')
@doc("A task's jobs, oldest first", response='JobList')
def task_jobs(task_id):
    s = studio()
    s.tasks.get(task_id)
    return {'jobs': [s.job_service.brief(j) for j in s.jobs.all(task_id)]}
