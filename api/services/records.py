"""JSON records on disk: one file each, written atomically (temp, fsync, rename).

Callers keep a cache of what they wrote; the file is always written first, so memory is never the
only copy. Records are replaced, never mutated in place, so a reader holding one is never surprised.
"""

import copy
import json
import logging
import threading
import time
from pathlib import Path

from utils.fsutil import atomic_write_json

from .errors import NotFound
from .paths import check_id

log = logging.getLogger(__name__)


def read_record(path):
    """Parse a record; None if absent. A record that does not parse is moved aside and reported."""
    path = Path(path)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as e:
        aside = path.with_name(f'{path.name}.corrupt-{int(time.time())}')
        log.error('%s does not parse (%s); moved to %s', path, e, aside.name)
        path.replace(aside)
        return None


def write_record(path, record):
    try:
        atomic_write_json(path, record)
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e       # a failed write() or fsync() names no file


def clean_temp_files(folder, name):
    """Remove temp files a crash left next to `name` (they were never renamed into place)."""
    for tmp in Path(folder).glob(f'.{name}.*.tmp'):
        try:
            tmp.unlink()
        except OSError:
            pass


def updated(record, **changes):
    """A new record: deep copy of `record` with top-level changes and a fresh updated_at."""
    out = copy.deepcopy(record)
    out.update(changes)
    out['updated_at'] = time.time()
    return out


class RecordIndex:
    """The in-memory index of one kind of record (id -> record), filled from disk and written through."""
    kind = 'record'

    def __init__(self):
        self._records = {}
        self._lock = threading.RLock()

    def get(self, rid):
        check_id(rid, f'{self.kind}_id')
        rec = self._records.get(rid)
        if rec is None:
            raise NotFound(f'no {self.kind} {rid!r}', field=f'{self.kind}_id')
        return rec

    def find(self, rid):
        return self._records.get(rid)
