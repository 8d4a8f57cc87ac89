"""Jobs: state, control (stop, save, cancel, resume, restart, continue) and monitoring."""

import time
from pathlib import Path

from flask import Blueprint, request, send_file

from ..http import body, doc, field, gpu_request, query_int, studio
from ..services.errors import BadRequest
from ..services.jobs.store import ACTIVE, FINAL

bp = Blueprint('jobs', __name__, url_prefix='/api/v1')
STATES = ACTIVE + FINAL


def _job(job_id):
    return studio().jobs.get(job_id)


@bp.get('/jobs')
@doc('List jobs (filter by state and task_id)', response='JobList', query={'state': 'string', 'task_id': 'string'})
def list_jobs():
    s, now = studio(), time.time()
    states = request.args.get('state')
    states = tuple(states.split(',')) if states else None
    if states and set(states) - set(STATES):
        raise BadRequest(f'state must be among {", ".join(STATES)}', field='state')
    return {'jobs': [s.job_service.brief(j, now) for j in s.jobs.all(request.args.get('task_id'), states)]}


@bp.get('/jobs/<job_id>')
@doc('A job: record with attempts (outcome and reason of each), progress, queue position', response='Job')
def get_job(job_id):
    return studio().job_service.view(_job(job_id))


@bp.post('/jobs/<job_id>/stop')
@doc('Stop: control/stop (or save_quit with save=true), then SIGTERM, then SIGKILL; a queued job is cancelled',
     body='StopRequest', response='Job', status=202)
def stop_job(job_id):
    return studio().job_service.stop(job_id, save=field(body(), 'save', bool, False)), 202


@bp.post('/jobs/<job_id>/save')
@doc('Save the LoRA now and keep training (control/save)', response='Job', status=202)
def save_job(job_id):
    return studio().job_service.save_now(job_id), 202


@bp.post('/jobs/<job_id>/cancel')
@doc('Cancel a queued job', response='Job')
def cancel_job(job_id):
    return studio().job_service.cancel(job_id)


@bp.post('/jobs/<job_id>/resume')
@doc('Queue a stopped, failed or interrupted job again, resuming from its newest checkpoint',
     body='GpuRequest', response='Job', status=202)
def resume_job(job_id):
    return studio().job_service.resume(job_id, *gpu_request(body())), 202


@bp.post('/jobs/<job_id>/restart')
@doc('New job of the same config resuming from a chosen checkpoint of this run', body='RestartRequest',
     response='Job', status=202)
def restart_job(job_id):
    d = body()
    return studio().training.restart(job_id, field(d, 'checkpoint', str, required=True), *gpu_request(d)), 202


@bp.post('/jobs/<job_id>/continue')
@doc('Train a finished run for more epochs: new job resuming from its final checkpoint', body='ContinueRequest',
     response='Job', status=202)
def continue_job(job_id):
    d = body()
    return studio().training.continue_run(job_id, field(d, 'epochs', int, required=True), *gpu_request(d)), 202


@bp.get('/jobs/<job_id>/progress')
@doc('Trainer status, step/total, epoch, speed, ETA, heartbeat age', response='Progress')
def job_progress(job_id):
    s = studio()
    job = _job(job_id)
    return {'job_id': job_id, 'state': job['state'], 'attempt': len(job['attempts']), **s.monitor.progress(job)}


@bp.get('/jobs/<job_id>/metrics')
@doc('Metric series (train/loss, train/lr, eval/...); after=<step> returns only newer points', response='Metrics',
     query={'names': 'string', 'after': 'integer'})
def job_metrics(job_id):
    names = request.args.get('names')
    return studio().monitor.metrics(_job(job_id), names.split(',') if names else None, query_int('after'))


@bp.get('/jobs/<job_id>/log')
@doc('Log text from a byte offset (or, with before=<offset>, the lines ending there); returns next_offset; '
     'unfinished last line as partial', response='LogChunk',
     query={'offset': 'integer', 'max_bytes': 'integer', 'tail': 'integer', 'before': 'integer'})
def job_log(job_id):
    return studio().job_service.log(_job(job_id), query_int('offset', 0, 0), query_int('max_bytes', None, 1),
                                    query_int('tail', None, 0), query_int('before', None, 0))


@bp.get('/jobs/<job_id>/artifacts')
@doc('Saved LoRAs (per epoch/step, with files to download) and checkpoints', response='Artifacts')
def job_artifacts(job_id):
    return studio().job_service.artifacts(_job(job_id))


@bp.get('/jobs/<job_id>/checkpoints')
@doc("The run's complete checkpoints, oldest first", response='CheckpointList')
def job_checkpoints(job_id):
    return {'checkpoints': studio().job_service.artifacts(_job(job_id))['checkpoints']}


@bp.get('/jobs/<job_id>/files/<path:rel>')
@doc('Download a file of the run directory (LoRA, config, report, log, video); ?token= works here; '
     '?download=<name> saves it under that name; a saved LoRA downloads as <task>-run<N>-epoch<N>[-<expert>].safetensors',
     binary=True, query={'download': 'string'})
def job_file(job_id, rel):
    jobs, job = studio().job_service, _job(job_id)
    path = jobs.file(job, rel)
    name = Path(request.args.get('download') or '').name
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest('download must be a file name without control characters (CR, LF, ...)', field='download')
    name = name or jobs.download_name(job, rel)
    return send_file(path, as_attachment=bool(name) or path.suffix in ('.safetensors', '.pt', '.bin'),
                     conditional=True, download_name=name or path.name)
