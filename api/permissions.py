"""Who may call which route in accounts mode (auth = 'accounts'): one entry per route, one function deciding.

Everyone signed in sees everything (a team tool: every GET is open to every role unless listed here).
A state-changing route (POST, PUT, PATCH, DELETE) must have an entry; one without is refused with 403
(fail closed), and tests/studio/test_studio_accounts.py fails while any lacks one. The kinds:

    PUBLIC      no user needed (logging in, asking who one is)
    SIGNED_IN   any user, viewers too: their own account only (log out, password, personal tokens), or a
                computation that changes nothing (the run estimate)
    MEMBER      members and admins: makes something new, which becomes theirs
    ADMIN       admins only (users, the audit log, backups, deleting shared models)
    owner(kind, arg)   members on what they own (the object named by the URL argument `arg`), admins on all

Viewers change nothing. An object recorded without an owner (made before accounts were turned on, or by
the scheduler for no one) belongs to no one: only admins change it.
"""

from .errors import Forbidden, Unauthorized
from .services.accounts.acting import folder_owner
from .services.errors import NotFound

PUBLIC, SIGNED_IN, MEMBER, ADMIN = ('public',), ('signed_in',), ('member',), ('admin',)


def owner(kind, arg):
    return ('owner', kind, arg)


TASK, JOB, DATASET, GALLERY, UPLOAD = (owner('task', 'task_id'), owner('job', 'job_id'), owner('dataset', 'name'),
                                        owner('gallery folder', 'folder'), owner('upload', 'upload_id'))

RULES = {
    'accounts.whoami': PUBLIC, 'accounts.login': PUBLIC,
    'accounts.logout': SIGNED_IN, 'accounts.change_password': SIGNED_IN,
    'accounts.create_token': SIGNED_IN, 'accounts.revoke_token': SIGNED_IN,
    'accounts.list_users': ADMIN, 'accounts.create_user': ADMIN, 'accounts.change_user': ADMIN, 'accounts.audit': ADMIN,
    'tasks.create_task': MEMBER, 'tasks.copy_task': MEMBER, 'tasks.import_task': MEMBER,
    'tasks.start_taehv': TASK,
    'tasks.patch_task': TASK, 'tasks.delete_task': TASK, 'tasks.start_task': TASK, 'tasks.validate_task': TASK,
    'inference.infer': TASK, 'inference.patch_settings': TASK, 'inference.evaluate': TASK,
    'jobs.stop_job': JOB, 'jobs.save_job': JOB, 'jobs.cancel_job': JOB, 'jobs.resume_job': JOB,
    'jobs.restart_job': JOB, 'jobs.continue_job': JOB, 'queue.move': JOB,
    'datasets.create_dataset': MEMBER,
    'datasets.rename_dataset': DATASET, 'datasets.delete_dataset': DATASET, 'datasets.delete_file': DATASET,
    'datasets.trim': DATASET, 'datasets.split': DATASET, 'datasets.import_media': DATASET,
    'captions.set_caption': DATASET, 'captions.bulk_captions': DATASET, 'captions.queue_captions': DATASET,
    'buckets.try_buckets': DATASET, 'buckets.save_config': DATASET,
    'uploads.create_upload': DATASET, 'uploads.put_chunk': UPLOAD, 'uploads.cancel_upload': UPLOAD,
    'gallery.create_folder': MEMBER,
    'gallery.rename_folder': GALLERY, 'gallery.delete_folder': GALLERY, 'gallery.upload': GALLERY,
    'gallery.rename_image': GALLERY, 'gallery.delete_image': GALLERY,
    'models.download': MEMBER, 'models.delete_model': ADMIN,
    'backups.backup_now': ADMIN,
    'system.change_settings': ADMIN, 'system.test_comfyui': ADMIN,     # the latter connects to a URL it is given
    'gpus.run_estimate': SIGNED_IN,
}


def find_owner(studio, kind, value):
    """(exists, owner) of the object a URL names; a missing one is left to the route (404)."""
    try:
        if kind == 'task':
            rec = studio.tasks.find(value)
        elif kind == 'job':
            rec = studio.jobs.find(value)
        elif kind == 'upload':
            return find_owner(studio, 'dataset', studio.data.uploads.get(value)['dataset'])
        elif kind == 'dataset':
            return True, folder_owner(studio.datasets.folder(value))
        else:
            return True, folder_owner(studio.inference.gallery.folder_path(value))
    except NotFound:
        return False, None
    return rec is not None, (rec or {}).get('owner')


def authorize(studio, user, endpoint, method, args):
    """Raise Unauthorized (no user) or Forbidden unless `user` ({'name', 'role'} or None) may call `endpoint`."""
    rule = RULES.get(endpoint, None if method in ('POST', 'PUT', 'PATCH', 'DELETE') else SIGNED_IN)
    if rule is None:
        raise Forbidden(f'{method} {endpoint} has no entry in the permissions table (api/permissions.py); refused')
    if rule == PUBLIC:
        return
    if user is None:
        raise Unauthorized('sign in first, or send a personal API token (Authorization: Bearer <token>)')
    if rule == SIGNED_IN or user['role'] == 'admin':
        return
    if user['role'] == 'viewer':
        raise Forbidden(f'{user["name"]} is a viewer; viewers change nothing')
    if rule == ADMIN:
        raise Forbidden('only an admin may do this')
    if rule == MEMBER:
        return
    _, kind, arg = rule
    exists, who = find_owner(studio, kind, args.get(arg))
    if exists and who != user['name']:
        raise Forbidden(f'{kind} {args.get(arg)!r} belongs to {who or "no one"}; only its owner or an admin may '
                        'change it', field=arg)
