"""Who the current request acts for, and the owner of the things it creates.

The Flask layer sets the user for the length of a request (`acting_as`); where a record is born (a task,
a job, a dataset or gallery folder) it asks `actor()` for its owner, so no service signature has to carry
the user. Outside a request (the scheduler thread queueing a preview, single-user mode) there is none.

A folder (dataset, gallery folder) keeps its owner in `<folder>/.studio/owner.json`, which travels with
it on rename and is hidden from listings and from the trainer (it skips dot-folders).
"""

import contextvars
import json
from pathlib import Path

from utils.fsutil import atomic_write_json

OWNER_FILE = Path('.studio') / 'owner.json'
_actor = contextvars.ContextVar('odeo_actor', default=None)


def actor():
    """The user name the current request acts for, or None."""
    return _actor.get()


def acting_as(name):
    """Set the actor; returns the token for `done`."""
    return _actor.set(name)


def done(token):
    _actor.reset(token)


def folder_owner(folder):
    try:
        return json.loads((Path(folder) / OWNER_FILE).read_text(encoding='utf-8')).get('owner')
    except (OSError, ValueError, AttributeError):
        return None


def claim_folder(folder):
    """Record the actor as the owner of a folder it just created (nothing without an actor)."""
    name = actor()
    if name is not None:
        atomic_write_json(Path(folder) / OWNER_FILE, {'owner': name})
