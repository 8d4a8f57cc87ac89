"""Resumable uploads into a dataset: create (or find again by client_key), send chunks, ask how much
the server has, cancel. The last chunk moves the file into the dataset after a content check."""

from flask import Blueprint, request

from ..http import body, doc, field, query_int, studio

bp = Blueprint('uploads', __name__, url_prefix='/api/v1')


def uploads():
    return studio().data.uploads


@bp.post('/datasets/<name>/uploads')
@doc('Start an upload (201), or find the unfinished one with the same client_key, filename and size (200)',
     body='UploadCreate', response='Upload', status=201)
def create_upload(name):
    d = body()
    up, new = uploads().create(name, field(d, 'filename', str, required=True), field(d, 'size', int, required=True),
                               field(d, 'replace', bool, False), field(d, 'client_key', str))
    return up, 201 if new else 200


@bp.get('/datasets/<name>/uploads')
@doc("A dataset's uploads: unfinished ones (to resume) and those finished in the last hour", response='UploadList')
def list_uploads(name):
    return {'uploads': uploads().list(studio().datasets.folder(name).name)}


@bp.get('/uploads/<upload_id>')
@doc('An upload: `received` is how many bytes the server has, where an interrupted client resumes', response='Upload')
def get_upload(upload_id):
    return uploads().get(upload_id)


@bp.put('/uploads/<upload_id>')
@doc('Append the raw request body at ?offset= (must equal `received`); the last byte finishes the upload',
     response='Upload', query={'offset': 'integer'})
def put_chunk(upload_id):
    store = uploads()
    rec = store.get(upload_id)
    request.max_content_length = max(0, rec['size'] - rec['received'])     # a chunk never exceeds what is left
    return store.write(upload_id, query_int('offset', None, 0), request.stream, request.content_length)


@bp.delete('/uploads/<upload_id>')
@doc('Cancel an upload and delete what it received', response='UploadCancelled')
def cancel_upload(upload_id):
    return uploads().cancel(upload_id)
