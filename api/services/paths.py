"""Where things live under the data root, and checks that untrusted ids and paths stay inside it.

    <data>/runs/<task-id>/task.json             task record
    <data>/runs/<task-id>/<job-id>/job.json     job record (+ the run directory of docs/architecture.md)
    <data>/queue.json                           order of queued jobs
    <data>/task_ids.json                        highest task id number used per prefix and day
    <data>/datasets/<name>/   <data>/models/    inputs
    <data>/trash/                               deleted tasks on their way out
"""

import os
import re
import time
from pathlib import Path

from utils.fsutil import is_within, safe_join

from .errors import BadRequest, PathRefused

NAME_MAX = 255          # bytes in one file name (ENAMETOOLONG beyond)
PATH_MAX = 4095         # bytes in a whole path
ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$')


def check_id(value, field='id'):
    """An id from a request: letters, digits, '.', '_', '-'; never '..' or a path."""
    if not isinstance(value, str) or not ID_RE.match(value) or '..' in value:
        raise PathRefused(f'{field} {value!r} is not a valid id', field=field)
    return value


def inside(root, rel, field='path'):
    """Resolve an untrusted relative path under root (symlinks followed); refuse anything that leaves it."""
    if not isinstance(rel, str) or not rel or rel.startswith(('/', '\\')) or '\x00' in rel:
        raise PathRefused(f'{field} {rel!r} must be a relative path inside {root}', field=field)
    check_length(root, rel, field)
    try:
        return safe_join(root, rel)
    except ValueError:
        raise PathRefused(f'{field} {rel!r} leaves {root}', field=field) from None


def check_length(root, rel, field='path'):
    """Refuse a path the file system would answer with ENAMETOOLONG: a name over NAME_MAX bytes, or a whole
    path over PATH_MAX."""
    try:
        parts = [os.fsencode(p) for p in rel.replace('\\', '/').split('/')]
        whole = len(os.fsencode(str(root))) + len(os.fsencode(rel)) + 1
    except UnicodeEncodeError:
        raise BadRequest(f'{field} is not valid Unicode text', field=field) from None
    longest = max(parts, key=len)
    if len(longest) > NAME_MAX:
        raise BadRequest(f'{field}: the name {os.fsdecode(longest[:40])}... is {len(longest)} bytes long; '
                         f'file names have at most {NAME_MAX}', field=field)
    if whole > PATH_MAX:
        raise BadRequest(f'{field}: the path is {whole} bytes long; at most {PATH_MAX}', field=field)
    return rel


def resolve_path(value, base) -> Path:
    """A path from a config or request: ~ expanded, a relative one taken against `base`, resolved."""
    p = Path(value).expanduser()
    return (p if p.is_absolute() else Path(base) / p).resolve()


def within_any(path, roots) -> bool:
    return any(is_within(path, r) for r in roots)


def confine(value, base, roots, where, field='path'):
    """A path from a config or request, resolved as resolve_path does (symlinks followed), that must stay
    inside one of `roots` (`where` names them for people). Returns the resolved path; raises PathRefused
    naming the value and where it leads. Every path check of a config goes through here."""
    p = resolve_path(value, base)
    if not within_any(p, roots):
        shown = f'{value!r} ({p})' if str(value) != str(p) else repr(str(p))
        raise PathRefused(f'{shown} is outside {where}', field=field)
    return p


def find_folders(root, classify, depth):
    """(folder, kind) for each folder under root, breadth first and at most `depth` levels down, that
    classify(folder) gives a kind for; the search does not go into those (a model's own sub-folders)."""
    frontier = [(Path(root), 0)] if Path(root).is_dir() else []
    while frontier:
        folder, level = frontier.pop(0)
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.'))
        except OSError:
            continue
        for child in children:
            kind = classify(child)
            if kind:
                yield child, kind
            elif level + 1 < depth:
                frontier.append((child, level + 1))


class Paths:
    def __init__(self, data_root):
        self.root = Path(data_root).expanduser().resolve()
        self.runs = self.root / 'runs'
        self.datasets = self.root / 'datasets'
        self.models = self.root / 'models'
        self.trash = self.root / 'trash'
        self.queue_file = self.root / 'queue.json'
        self._checked_at, self._check_error = float('-inf'), None
        self.task_ids = self.root / 'task_ids.json'

    def make(self):
        for d in (self.runs, self.datasets, self.models, self.trash):
            d.mkdir(parents=True, exist_ok=True)

    def task_dir(self, task_id) -> Path:
        return self.runs / check_id(task_id, 'task_id')

    def task_file(self, task_id) -> Path:
        return self.task_dir(task_id) / 'task.json'

    def job_dir(self, task_id, job_id) -> Path:
        return self.task_dir(task_id) / check_id(job_id, 'job_id')

    def relative(self, path) -> str:
        return str(Path(path).resolve().relative_to(self.root))

    def write_check(self, max_age_s=5.0):
        """None when a small file can be written, synced and removed in the root and in runs/ (the records);
        else the OSError (disk full, read-only, not writable). Answered from the last try when it is younger
        than max_age_s."""
        now = time.monotonic()
        if now - self._checked_at < max_age_s:
            return self._check_error
        error = None
        for folder in (self.root, self.runs):
            probe = folder / '.write-check'
            try:
                fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, b'ok\n' * 1024)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.unlink(probe)
            except FileNotFoundError:
                continue
            except OSError as e:
                error = e if e.filename else OSError(e.errno, e.strerror, str(probe))
                try:
                    probe.unlink(missing_ok=True)
                except OSError:
                    pass
                break
        self._checked_at, self._check_error = now, error
        return error
