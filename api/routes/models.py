"""Models area: checkpoints under the model roots (with variant, size, hub revision, what uses them),
downloads from a Hugging Face hub as `download` jobs, and deleting a model no active job uses."""

from flask import Blueprint, request

from ..http import body, doc, query_bool, studio

bp = Blueprint('models', __name__, url_prefix='/api/v1')


def models():
    return studio().model_service


@bp.get('/models')
@doc('Models under the model roots with detected variant, layout, size, hub revision and users; recent downloads; '
     'what can be downloaded', response='ModelList')
def list_models():
    return models().list()


@bp.post('/models/downloads')
@doc('Queue a download of a Wan variant (official, diffusers or comfy layout) or a captioner from the hub '
     '(507 when the disk is too small, 502 when the hub does not answer); follow it with GET /jobs/<id>',
     body='DownloadRequest', response='Download', status=202)
def download():
    return models().queue_download(body()), 202


@bp.delete('/models/<path:name>')
@doc('Delete a model folder (needs confirm=true; 409 naming the jobs while a queued or running job uses it)',
     response='ModelDeleted', query={'confirm': 'boolean', 'root': 'string'})
def delete_model(name):
    return models().delete(name, query_bool('confirm'), request.args.get('root'))
