"""Datasets: folders under <data>/datasets/<name>/ holding media files and their captions.

    catalog.list()                     # [{name, path, images, videos, captions}]
    catalog.list(details=True)         # ... + files, size_bytes, duration_s (probed, cached), has_config, unreadable
    catalog.create('beach')            # a new empty folder
    catalog.rename('beach', 'beach-v2'); catalog.delete('beach-v2', confirm=True)
    place_file(tmp, folder, 'clip.mp4')   # move a finished file in without overwriting: 'clip (1).mp4'

What the studio derives from a dataset (thumbnails, preview copies, caption provenance) lives in the
folder's hidden `.studio/` sub-folder, which the trainer never reads (it skips dot-files and folders).
"""

import os
import re
import shutil
import time
from pathlib import Path

from utils.fsutil import fsync_dir
from utils.media import MediaInfo, media_kind, probe_many

from ..accounts.acting import claim_folder
from ..errors import BadRequest, Conflict, NotFound, PathRefused
from ..paths import NAME_MAX, inside

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9 _.()+-]{0,99}$')
STUDIO_DIR = '.studio'          # per-dataset studio files (previews, caption provenance)


def check_name(name, field='name'):
    """A dataset name for a new folder: letters, digits, space and ._()+-; no path, no leading dot."""
    if not isinstance(name, str) or not NAME_RE.match(name) or '..' in name or name != name.strip():
        raise BadRequest(f'{field} {name!r} must be 1-100 letters, digits, spaces or ._()+- and start with a '
                         f'letter or digit', field=field)
    return name


def media_files(folder: Path):
    """Media files at the top of a dataset folder (what the trainer reads, hidden files aside), sorted."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith('.') and media_kind(p) is not None)


def describe(folder: Path, details=False):
    counts = {'images': 0, 'videos': 0, 'captions': 0}
    size, media = 0, []
    for f in folder.iterdir():
        if f.name.startswith('.') or not f.is_file():
            continue
        kind = media_kind(f)
        if kind:
            counts[f'{kind}s'] += 1
            size += f.stat().st_size
            media.append(f)
        elif f.suffix.lower() == '.txt':
            counts['captions'] += 1
    out = {'name': folder.name, 'path': str(folder), **counts}
    if details:
        probes = probe_many(sorted(media), cache_file=folder / 'cache' / 'probe.json')
        infos = [p for p in probes.values() if isinstance(p, MediaInfo)]
        out.update(files=len(media), size_bytes=size, has_config=(folder / 'dataset.toml').is_file(),
                   modified_at=folder.stat().st_mtime, unreadable=len(probes) - len(infos),
                   duration_s=round(sum(i.duration or 0.0 for i in infos if i.kind == 'video'), 3))
    return out


class DatasetCatalog:
    def __init__(self, root, trash=None):
        self.root = Path(root)
        self.trash = Path(trash) if trash else self.root.parent / 'trash'

    def list(self, details=False):
        if not self.root.is_dir():
            return []
        return [describe(d, details) for d in sorted(self.root.iterdir()) if d.is_dir() and not d.name.startswith('.')]

    def folder(self, name, field='dataset') -> Path:
        """The folder of an existing dataset (one path component, inside the datasets root)."""
        if not isinstance(name, str) or not name or '/' in name or '\\' in name or name.startswith('.'):
            raise PathRefused(f'{field} {name!r} is not a dataset name', field=field)
        folder = inside(self.root, name, field)
        if folder.parent != self.root.resolve() or not folder.is_dir():
            raise NotFound(f'no dataset {name!r} in {self.root}', field=field)
        return folder

    def get(self, name, details=False):
        return describe(self.folder(name), details)

    def create(self, name):
        name = check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        if any(d.name.lower() == name.lower() for d in self.root.iterdir()):
            raise Conflict(f'a dataset named {name!r} exists', field='name')
        try:
            (self.root / name).mkdir()
        except FileExistsError:
            raise Conflict(f'a dataset named {name!r} exists', field='name') from None
        claim_folder(self.root / name)
        return describe(self.root / name, details=True)

    def rename(self, name, new_name):
        folder = self.folder(name)
        new_name = check_name(new_name)
        if new_name == name:
            return describe(folder, details=True)
        if any(d.name.lower() == new_name.lower() and d.name != name for d in self.root.iterdir()):
            raise Conflict(f'a dataset named {new_name!r} exists', field='name')
        target = self.root / new_name
        try:
            os.rename(folder, target)            # atomic; refuses to replace a non-empty folder
        except OSError as e:
            raise Conflict(f'cannot rename {name!r} to {new_name!r}: {e.strerror}', field='name') from None
        fsync_dir(self.root)
        return describe(target, details=True)

    def delete(self, name, confirm=False):
        folder = self.folder(name)
        if confirm is not True:
            raise BadRequest(f'deleting dataset {name!r} removes its files; repeat with confirm=true', field='confirm')
        self.trash.mkdir(parents=True, exist_ok=True)
        gone = self.trash / f'dataset-{name}.{time.time_ns()}'
        os.rename(folder, gone)                  # one rename: the dataset vanishes at once
        shutil.rmtree(gone, ignore_errors=True)
        return {'name': name, 'deleted': True}


# ---- putting finished files into a dataset ----------------------------------------------------------

def candidate_names(name):
    """'clip.mp4', 'clip (1).mp4', 'clip (2).mp4', ...; a stem too long for the file system is shortened
    (a trimmed clip's name adds to its source's), keeping room for a companion's suffix such as '.txt'."""
    stem, suffix = os.path.splitext(name)
    yield fit_name(stem, suffix)
    n = 1
    while True:
        yield fit_name(stem, f' ({n}){suffix}')
        n += 1


def fit_name(stem, tail, room=8):
    """stem + tail, the stem cut short so the name has at most NAME_MAX - room bytes (room: for a ' (n)'
    added later, or a companion's longer suffix)."""
    budget = NAME_MAX - room - len(os.fsencode(tail))
    while len(os.fsencode(stem)) > budget:
        stem = stem[:-1]
    return stem + tail


def check_file_name(name, field='filename'):
    """A file name for the top of a dataset: no folders, no leading dot, no control characters, at most 200
    bytes (room for the ' (n)' of a taken name and a caption's '.txt' under the file system's NAME_MAX)."""
    if not isinstance(name, str) or not name or len(name.encode('utf-8', 'replace')) > 200 or name != Path(name).name \
            or name.startswith('.') or any(ord(c) < 32 for c in name) or '\\' in name:
        raise BadRequest(f'{field} {name!r} must be a plain file name (no folders, not starting with a dot)',
                         field=field)
    return name


def place_file(src, folder, name, replace=False, companions=()):
    """Move the finished file `src` into `folder` as `name`, atomically. An existing file of that name is
    replaced only when `replace`; otherwise the first free 'name (n).ext' is taken (never overwritten,
    even by a concurrent writer: the name is claimed with a hard link, which fails if it exists).
    `companions` are file names whose stem must also be free (a clip's caption sidecar '.txt').
    Returns the final Path."""
    src, folder = Path(src), Path(folder)
    if replace:
        target = folder / name
        os.replace(src, target)
        fsync_dir(folder)
        return target
    for candidate in candidate_names(name):
        target = folder / candidate
        if any((folder / (Path(candidate).stem + c)).exists() for c in companions):
            continue
        try:
            os.link(src, target)
        except FileExistsError:
            continue
        except OSError:                          # no hard links here: claim the name, then rename over it
            try:
                fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            os.replace(src, target)
            fsync_dir(folder)
            return target
        os.unlink(src)
        fsync_dir(folder)
        return target
