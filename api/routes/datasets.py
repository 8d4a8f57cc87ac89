"""Datasets: list, create, rename, delete; their media files (info, bytes with Range, thumbnails, frame
strips, browser-playable copies); trim and split; import from a server folder or metadata table."""

from flask import Blueprint, request, send_file

from ..http import body, doc, field, query_bool, query_int, studio

bp = Blueprint('datasets', __name__, url_prefix='/api/v1')


def data():
    return studio().data


@bp.get('/datasets')
@doc('Dataset folders under <data>/datasets (details=true adds total duration from probing)', response='DatasetList',
     query={'details': 'boolean'})
def list_datasets():
    return {'datasets': studio().datasets.list(details=query_bool('details'))}


@bp.post('/datasets')
@doc('Create an empty dataset folder', body='NameBody', response='Dataset', status=201)
def create_dataset():
    return studio().datasets.create(field(body(), 'name', str, required=True)), 201


@bp.get('/datasets/<name>')
@doc('One dataset folder', response='Dataset', query={'details': 'boolean'})
def get_dataset(name):
    return studio().datasets.get(name, details=query_bool('details'))


@bp.patch('/datasets/<name>')
@doc('Rename a dataset folder; task drafts that read it follow (refused while a caption job or a queued or running training job uses it)',
     body='NameBody', response='Dataset')
def rename_dataset(name):
    return data().rename(name, field(body(), 'name', str, required=True))


@bp.delete('/datasets/<name>')
@doc('Delete a dataset folder and everything in it (needs confirm=true; refused while a job uses it)', response='Deleted',
     query={'confirm': 'boolean'})
def delete_dataset(name):
    return data().delete(name, query_bool('confirm'))


@bp.get('/datasets/<name>/files')
@doc('Media files with probe, caption (text, source, origin) and bucket or drop reason under the saved settings',
     response='FileList', query={'q': 'string', 'variant': 'string'})
def list_files(name):
    return data().files(name, q=request.args.get('q') or None, options={'variant': request.args.get('variant')})


@bp.get('/datasets/<name>/files/<path:file>')
@doc('One media file: probe, codec playable in a browser, caption', response='FileInfo')
def file_info(name, file):
    return data().file_info(name, file)


@bp.delete('/datasets/<name>/files/<path:file>')
@doc('Delete a media file with its caption and previews (needs confirm=true)', response='Deleted',
     query={'confirm': 'boolean'})
def delete_file(name, file):
    return data().delete_file(name, file, query_bool('confirm'))


@bp.get('/datasets/<name>/media/<path:file>')
@doc('The media file itself (Range requests work, so <video> can seek); ?token= works here', binary=True)
def media(name, file):
    return send_file(data().file_path(name, file)[1], conditional=True, max_age=0)


@bp.get('/datasets/<name>/preview/<path:file>')
@doc('What a browser can play: the file, or a cached H.264 (videos) / PNG (images) copy; Range works', binary=True)
def preview(name, file):
    path, copied = data().playable(name, file)
    resp = send_file(path, conditional=True, max_age=0)
    resp.headers['X-Preview-Copy'] = 'true' if copied else 'false'
    return resp


@bp.get('/datasets/<name>/thumbnail/<path:file>')
@doc('A JPEG thumbnail (cached by file size and mtime)', binary=True)
def thumbnail(name, file):
    return send_file(data().thumbnail(name, file), mimetype='image/jpeg', conditional=True, max_age=3600)


@bp.get('/datasets/<name>/strip/<path:file>')
@doc('n frames side by side as one JPEG; frame k is at (k + 0.5) * duration / n', binary=True, query={'n': 'integer'})
def strip(name, file):
    return send_file(data().strip(name, file, query_int('n', 8, 1)), mimetype='image/jpeg', conditional=True,
                     max_age=3600)


@bp.post('/datasets/<name>/trim')
@doc('Cut [start, end) seconds of a video into a new clip (caption copied; the original is untouched)',
     body='TrimRequest', response='TrimResult', status=201)
def trim(name):
    d = body()
    return data().trim(name, field(d, 'file', str, required=True), d.get('start'), d.get('end')), 201


@bp.post('/datasets/<name>/split')
@doc('Split a video at scene changes (FFmpeg scdet) or given cuts into clips of at least min_length seconds; '
     'dry_run lists the pieces only', body='SplitRequest', response='SplitResult')
def split(name):
    d = body()
    return data().split(name, field(d, 'file', str, required=True), field(d, 'threshold', (int, float), 10.0),
                        field(d, 'min_length', (int, float), 1.0), d.get('cuts'), field(d, 'dry_run', bool, False))


@bp.post('/datasets/<name>/import')
@doc('Import media (and their captions) from a server folder or metadata table inside an import root',
     body='ImportRequest', response='ImportResult')
def import_media(name):
    d = body()
    return data().import_media(name, field(d, 'path', str, required=True), field(d, 'mode', str, 'copy'))
