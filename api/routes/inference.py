"""Inference studio: LoRAs to test, a task's test settings, test runs (infer jobs), results, ComfyUI status."""

from flask import Blueprint, Response

from ..http import body, doc, studio

bp = Blueprint('inference', __name__, url_prefix='/api/v1')


@bp.get('/inference/loras')
@doc('Every complete LoRA of every training run, grouped by task', response='LoraGroups')
def all_loras():
    s = studio()
    return {'tasks': [{'task_id': t['id'], 'task_name': t['name'], 'best': s.inference.best(t['id']),
                       'loras': s.inference.loras(t['id'])} for t in s.tasks.all() if not t.get('deleting')]}


@bp.get('/tasks/<task_id>/loras')
@doc("A task's LoRAs (each training run's saves, epoch and step), the best one marked", response='TaskLoras')
def task_loras(task_id):
    s = studio()
    return {'task_id': task_id, 'best': s.inference.best(task_id), 'loras': s.inference.loras(task_id)}


@bp.get('/tasks/<task_id>/inference')
@doc("A task's test settings: prompts, images, preview settings, best epoch; defaults for its model",
     response='TaskInference')
def get_settings(task_id):
    return studio().inference.task_settings(task_id)


@bp.patch('/tasks/<task_id>/inference')
@doc('Change test prompts, images, negative prompt, preview settings or the best epoch ({"best": null} clears)',
     body='TaskInferencePatch', response='TaskInference')
def patch_settings(task_id):
    return studio().inference.patch_settings(task_id, body())


@bp.post('/tasks/<task_id>/infer')
@doc('Queue a test run: LoRAs x inputs (images x prompts) x strengths, one video each', body='InferRequest',
     response='Job', status=202)
def infer(task_id):
    return studio().inference.run(task_id, body()), 202


@bp.get('/tasks/<task_id>/results')
@doc("Every test run of the task and every video they made (the comparison grid's data)", response='Results')
def results(task_id):
    return studio().inference.results(task_id)


@bp.get('/jobs/<job_id>/previews/<cell>')
@doc("The newest live preview of a test run's cell while it renders (animated WebP, or ComfyUI's JPEG / PNG); "
     '404 before the first one; ?token= works here', binary=True)
def live_preview(job_id, cell):
    data, mimetype = studio().inference.live_preview(job_id, cell)
    return Response(data, mimetype=mimetype, headers={'Cache-Control': 'no-store'})


@bp.get('/inference/comfyui')
@doc('The ComfyUI the studio is set to use: reachable or not, and why', response='ComfyStatus')
def comfyui():
    return studio().inference.comfyui_status()


@bp.post('/tasks/<task_id>/evaluations')
@doc('Queue a batch evaluation (an `eval` job): every row of a prompt list or an image,prompt CSV with each chosen '
     'LoRA and strength, spread over `gpus` devices (CPU slots on a CPU-only studio), one worker process each; '
     'its results join GET /tasks/{id}/results', body='EvalRequest', response='Job', status=202)
def evaluate(task_id):
    return studio().inference.evaluate(task_id, body()), 202
