"""Gallery: folders of test images under <data>/gallery (create, rename, delete, upload, list with sizes)."""

from flask import Blueprint, request, send_file

from ..http import body, doc, field, query_bool, studio
from ..services.errors import BadRequest

bp = Blueprint('gallery', __name__, url_prefix='/api/v1')


def gallery():
    return studio().inference.gallery


@bp.get('/gallery')
@doc('Gallery folders with their image counts', response='GalleryFolders')
def folders():
    return {'root': str(gallery().root), 'folders': gallery().folders()}


@bp.post('/gallery')
@doc('Create a gallery folder', body='NameBody', response='GalleryFolder', status=201)
def create_folder():
    return gallery().create(field(body(), 'name', str, required=True)), 201


@bp.patch('/gallery/<folder>')
@doc('Rename a gallery folder', body='NameBody', response='GalleryFolder')
def rename_folder(folder):
    return gallery().rename(folder, field(body(), 'name', str, required=True))


@bp.delete('/gallery/<folder>')
@doc('Delete a gallery folder and its images (needs confirm=true)', response='Deleted', query={'confirm': 'boolean'})
def delete_folder(folder):
    return gallery().delete(folder, confirm=query_bool('confirm') or None)


@bp.get('/gallery/<folder>')
@doc("A folder's images: size, and with ?variant= the generation size proposed at each area",
     response='GalleryImages', query={'variant': 'string'})
def images(folder):
    return gallery().images(folder, request.args.get('variant') or None)


@bp.post('/gallery/<folder>/images')
@doc('Upload images (multipart, field "files"); each is checked by decoding it; taken names get " (1)"',
     response='GalleryUpload', status=201)
def upload(folder):
    request.max_content_length = studio().settings.max_image_upload_bytes
    files = request.files.getlist('files') + request.files.getlist('file')
    if not files:
        raise BadRequest('no file in the upload (multipart field "files")', field='files')
    added, rejected = [], []
    for f in files:
        try:
            added.append(gallery().add(folder, f.filename, f.stream))
        except BadRequest as e:
            rejected.append({'file': f.filename, 'message': e.message})
    if not added:
        raise BadRequest(rejected[0]['message'], field='files', issues=rejected)
    return {'added': added, 'rejected': rejected}, 201


@bp.get('/gallery/<folder>/images/<name>')
@doc('The image file (?token= works here)', binary=True)
def image_file(folder, name):
    return send_file(gallery().image_path(f'{folder}/{name}'), conditional=True)


@bp.patch('/gallery/<folder>/images/<name>')
@doc('Rename an image (same extension)', body='NameBody', response='GalleryImage')
def rename_image(folder, name):
    return gallery().rename_image(folder, name, field(body(), 'name', str, required=True))


@bp.delete('/gallery/<folder>/images/<name>')
@doc('Delete an image', response='Deleted')
def delete_image(folder, name):
    return gallery().remove(folder, name)
