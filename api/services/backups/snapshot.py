"""One snapshot of a data root: walk it by the rules below, copy each file consistently, write the manifest.

    <backup_dir>/<YYYYmmddTHHMMSSZ>.partial/   while it is written (a crash leaves it; the next run removes it)
    <backup_dir>/<YYYYmmddTHHMMSSZ>/           renamed once complete; manifest.json inside, written last

Rules, by path relative to the data root (first match wins):

    trash/, temp files (.<name>.*.tmp), datasets/*/.studio/tmp/        skipped
    uploads/                                                             listed (upload: unfinished bytes)
    models/                                                              listed (model weights)
    datasets/**/cache/, datasets/*/.studio/previews/                     listed (cache: recomputable)
    runs/**/checkpoints/                                                 listed (checkpoint: resume state)
    video, image and audio files anywhere                                listed (media)
    weights (.safetensors .pt .bin ...) in runs/<task>/<job>/epochN|stepN/   copied (LoRA)
    weights anywhere else                                                listed (model)
    everything else: records, settings, dataset TOMLs, captions,
    caption provenance, run configs, reports, logs, events               copied

"Listed" files go into the manifest's `listed` section (path, size, mtime, kind) and are copied only when
`include_media` is on. Symbolic links are listed with their target and never followed.

Consistency: the studio and the trainer replace records by rename, so an open file is one whole version;
each file is read through its open descriptor up to the size it had when opened, and the manifest's hash
is of the bytes copied. events.jsonl is append-only: it is copied up to its last newline. A file whose
(size, mtime) equals the previous snapshot's entry is hard-linked from there (copied where the
filesystem cannot link), so an unchanged LoRA costs no space. No lock of the studio is taken.
"""

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path, PurePosixPath

from utils.fsutil import atomic_write_json, fsync_dir

MANIFEST = 'manifest.json'
VERSION = 1
NAME_RE = re.compile(r'^(\d{8}T\d{6}Z)(?:-(\d+))?$')
PARTIAL = '.partial'
CHUNK = 1 << 20

MEDIA_EXT = {'.mp4', '.mov', '.mkv', '.webm', '.avi', '.m4v', '.gif', '.png', '.jpg', '.jpeg', '.webp', '.bmp',
             '.tif', '.tiff', '.wav', '.mp3', '.flac', '.ogg'}
WEIGHT_EXT = {'.safetensors', '.pt', '.pth', '.bin', '.ckpt', '.gguf', '.onnx', '.npy', '.npz'}
SAVE_DIR_RE = re.compile(r'^(epoch|step)\d+$')
APPEND_ONLY = {'events.jsonl'}


def classify(rel: PurePosixPath):
    """'skip', 'copy', or the kind of a listed file ('upload', 'model', 'cache', 'checkpoint', 'media')."""
    parts, name, ext = rel.parts, rel.name, rel.suffix.lower()
    top = parts[0]
    if top == 'trash' or (name.startswith('.') and name.endswith('.tmp')):
        return 'skip'
    if top == 'datasets' and len(parts) > 3 and parts[2] == '.studio':
        return {'tmp': 'skip', 'previews': 'cache'}.get(parts[3], 'copy')
    if top == 'uploads':
        return 'upload'
    if top == 'models':
        return 'model'
    if top == 'datasets' and 'cache' in parts[2:-1]:
        return 'cache'
    if top == 'runs' and 'checkpoints' in parts[:-1]:
        return 'checkpoint'
    if ext in MEDIA_EXT:
        return 'media'
    if ext in WEIGHT_EXT:
        is_lora = top == 'runs' and len(parts) >= 5 and SAVE_DIR_RE.match(parts[3])
        return 'copy' if is_lora else 'model'
    return 'copy'


def walk(root: Path, exclude=()):
    """(relative posix path, kind, os.stat_result) of everything under root, sorted, not following links;
    folders in `exclude` (absolute, resolved) are not entered."""
    exclude = {Path(e) for e in exclude}
    for folder, dirs, files in os.walk(root, onerror=lambda e: None):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            p = here / d
            if p in exclude:
                continue
            if p.is_symlink():
                files.append(d)
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            p = here / f
            rel = PurePosixPath(p.relative_to(root).as_posix())
            kind = classify(rel)
            if kind == 'skip':
                continue
            try:
                st = p.lstat()
            except OSError:                 # gone since the folder was read
                continue
            yield rel, ('symlink' if os.path.islink(p) else kind), st


def copy_consistent(src, dst, append_only=False):
    """Copy what `src` holds at the moment it is opened; (size, sha256, mtime) of the bytes written."""
    digest, size, pending = hashlib.sha256(), 0, b''
    with open(src, 'rb') as f:
        st = os.fstat(f.fileno())
        left = st.st_size
        with open(dst, 'wb') as out:
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                if append_only:                          # whole lines only: the last one may be half written
                    chunk = pending + chunk
                    cut = chunk.rfind(b'\n') + 1
                    chunk, pending = chunk[:cut], chunk[cut:]
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    return size, digest.hexdigest(), st.st_mtime


def link_or_copy(src, dst):
    """Hard-link `src` (a file of an earlier snapshot) to `dst`; copy where the filesystem cannot link."""
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copy2(src, dst)
        return False


def read_manifest(snapshot: Path):
    with open(Path(snapshot) / MANIFEST, encoding='utf-8') as f:
        return json.load(f)


def take(root, target: Path, include_media=False, exclude=(), previous=None):
    """Snapshot `root` into the folder `target` (absent; a `.partial` sibling is written first) and return
    its manifest. `previous`: (folder, manifest) of the newest complete snapshot, for hard links."""
    root, target = Path(root).resolve(), Path(target)
    work = target.with_name(target.name + PARTIAL)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.time()
    prev_dir, prev = (Path(previous[0]), {e['path']: e for e in previous[1]['files']}) if previous else (None, {})
    files, listed, skipped = [], [], []
    totals = {'files': 0, 'bytes': 0, 'new_bytes': 0, 'linked': 0, 'listed': 0, 'listed_bytes': 0}
    made = set()
    for rel, kind, st in walk(root, exclude):
        if kind != 'copy' and not (include_media and kind != 'symlink'):
            entry = {'path': str(rel), 'size': st.st_size, 'mtime': st.st_mtime, 'kind': kind}
            if kind == 'symlink':
                entry['target'] = os.readlink(root / rel)
            listed.append(entry)
            totals['listed'] += 1
            totals['listed_bytes'] += st.st_size
            continue
        dst = work / rel
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        try:
            old = prev.get(str(rel))
            if old and old['size'] == st.st_size and old['mtime'] == st.st_mtime \
                    and (prev_dir / rel).is_file():
                linked = link_or_copy(prev_dir / rel, dst)
                entry = {k: old[k] for k in ('path', 'size', 'sha256', 'mtime')}
                totals['linked'] += linked
                totals['new_bytes'] += 0 if linked else old['size']
            else:
                size, sha, mtime = copy_consistent(root / rel, dst, append_only=rel.name in APPEND_ONLY)
                entry = {'path': str(rel), 'size': size, 'sha256': sha, 'mtime': mtime}
                totals['new_bytes'] += size
        except FileNotFoundError:                       # deleted since the walk saw it: not in this snapshot
            dst.unlink(missing_ok=True)
            continue
        except OSError as e:
            dst.unlink(missing_ok=True)
            skipped.append({'path': str(rel), 'error': f'{type(e).__name__}: {e.strerror or e}'})
            continue
        files.append(entry)
        totals['files'] += 1
        totals['bytes'] += entry['size']
    manifest = {'version': VERSION, 'name': target.name, 'data_root': str(root), 'include_media': include_media,
                'started_at': started, 'finished_at': time.time(), 'totals': totals,
                'files': files, 'listed': listed, 'skipped': skipped}
    atomic_write_json(work / MANIFEST, manifest)
    for d in sorted(made, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(d)
    os.rename(work, target)
    fsync_dir(target.parent)
    return manifest
