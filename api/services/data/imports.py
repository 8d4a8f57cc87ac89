"""Bring files that are already on the server into a dataset: a folder, or a DiffSynth-style metadata table.

    import_media(dest, '/srv/footage/beach', roots, mode='link')     # media + captions of that folder
    import_media(dest, '/srv/footage/metadata.csv', roots)           # the files its rows name, with prompts

The source must lie inside one of the import roots (setting `import_roots`, plus <data>/imports), and
so must every file a table names. Captions are read by utils.captions exactly as the trainer would read
them in the source folder (table, captions.json, sidecar) and written as sidecar .txt files beside the
imported copies, so the dataset is then edited like any other. Each file is checked by its content
(utils.media.probe); one that is not readable media is skipped with the reason. `link` makes hard links
(no extra space; falls back to a copy across file systems); names that clash get ' (1)'.
"""

import os
import secrets
import shutil
from pathlib import Path

from utils.captions import METADATA_NAMES, CaptionError, find_captions, load_sources
from utils.fsutil import atomic_write_text
from utils.media import MediaError, media_kind, probe

from ..errors import BadRequest, NotFound, PathRefused
from ..paths import within_any
from .datasets import STUDIO_DIR, place_file

MODES = ('copy', 'link')
TABLE_SUFFIXES = ('.csv', '.json', '.jsonl')


def _checked_source(path, roots):
    if not isinstance(path, str) or not path.strip() or '\x00' in path:
        raise BadRequest('path must be a folder or metadata file on the server', field='path')
    p = Path(os.path.expanduser(path.strip()))
    if not p.is_absolute():
        raise BadRequest(f'path {path!r} must be absolute', field='path')
    if not within_any(p, roots):
        raise PathRefused(f'path {path!r} is outside the import folders ({", ".join(str(r) for r in roots)}); '
                          f'add its folder to the import_roots setting', field='path')
    if not p.exists():
        raise NotFound(f'path {path!r} does not exist', field='path')
    return p.resolve()


def _sources(src: Path):
    """(caption sources, media paths) of a folder, or of the files a metadata table names."""
    if src.is_dir():
        sources = load_sources(src)
        media = [p for p in sorted(src.iterdir()) if p.is_file() and not p.name.startswith('.')
                 and p.name not in METADATA_NAMES and media_kind(p) is not None]
        return sources, sorted(set(media) | set(sources.listed))
    if src.suffix.lower() not in TABLE_SUFFIXES:
        raise BadRequest(f'{src.name}: a file to import must be a metadata table (.csv, .json, .jsonl)', field='path')
    sources = load_sources(src.parent, metadata_file=str(src))
    return sources, sorted(sources.listed)


def _bring(path: Path, tmp: Path, mode):
    if mode == 'link':
        try:
            os.link(path, tmp)
            return None
        except OSError:
            note = f'{path.name}: copied (a hard link is not possible here)'
    else:
        note = None
    shutil.copyfile(path, tmp)
    return note


def import_media(dest: Path, path, roots, mode='copy'):
    if mode not in MODES:
        raise BadRequest(f'mode must be one of {", ".join(MODES)}', field='mode')
    src = _checked_source(path, roots)
    sources, media = _sources(src)
    out = {'source': str(src), 'imported': [], 'skipped': [], 'notes': list(sources.problems)}
    tmp_dir = dest / STUDIO_DIR / 'tmp'
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for p in media:
        if not within_any(p, roots):
            out['skipped'].append({'source': str(p), 'reason': 'outside the import folders'})
            continue
        try:
            probe(p)
        except MediaError as e:
            out['skipped'].append({'source': str(p), 'reason': e.reason})
            continue
        try:
            captions, _ = find_captions(sources, p)
        except CaptionError as e:
            captions = None
            out['notes'].append(f'{p.name}: caption not imported: {e}')
        tmp = tmp_dir / f'{secrets.token_hex(6)}{p.suffix.lower()}'
        try:
            note = _bring(p, tmp, mode)
            target = place_file(tmp, dest, p.name, companions=('.txt',))
        finally:
            tmp.unlink(missing_ok=True)
        if note:
            out['notes'].append(note)
        if captions and captions[0].strip():
            atomic_write_text(target.with_suffix('.txt'), captions[0].strip() + '\n')
        out['imported'].append({'source': str(p), 'file': target.name, 'caption': bool(captions and captions[0].strip())})
    return out
