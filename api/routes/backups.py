"""Backups: the last run, the snapshots kept, and taking one now."""

from flask import Blueprint

from ..http import doc, studio

bp = Blueprint('backups', __name__, url_prefix='/api/v1')


@bp.get('/backups')
@doc('Backup settings, the last run (time, size, files, failure) and the snapshots kept, newest first',
     response='Backups')
def backups():
    return studio().backups.view()


@bp.post('/backups')
@doc('Take a snapshot now, in the background (409 while one runs)', response='Backups', status=202)
def backup_now():
    return studio().backups.run_now(), 202
