"""Resumable uploads into a dataset, streamed to disk in chunks.

    up = uploads.create('beach', 'clip.mp4', size=3_000_000_000, client_key='clip.mp4|3000000000|1700000000')
    uploads.write(up['id'], offset=0, stream=request.stream, length=16 MiB)    # repeat; each call appends
    uploads.get(up['id'])['received']          # how much the server has: where an interrupted client resumes

<data>/uploads/<id>/upload.json is the record (dataset, file name, declared size, replace, client key);
<data>/uploads/<id>/data<ext> the bytes so far: its size is `received`, so nothing can disagree with the
disk. When the last byte arrives the file is checked by its content (utils.media.probe): a file that is
not media we can read is deleted and the upload ends `rejected` with the reason; a good one is moved into
the dataset under its name, or 'name (1).ext' when that is taken (unless `replace`). An unfinished
upload untouched for `expiry_s` is removed by the next sweep (run on every create and list).

The same `client_key` (the browser sends name|size|lastModified) finds an unfinished upload again after
a reload or a dropped connection, so the client continues from `received` instead of starting over.
"""

import os
import secrets
import shutil
import threading
import time
from pathlib import Path

from utils.fsutil import atomic_write_json
from utils.media import MediaError, media_kind, probe

from ..errors import BadRequest, Conflict, Invalid, NotFound
from ..paths import check_id
from ..records import read_record
from .datasets import check_file_name, place_file

COPY_BLOCK = 1024 * 1024            # bytes read from the request and written per step
FINISHED_KEEP_S = 3600.0            # finished / rejected records stay this long for clients to read


class UploadStore:
    def __init__(self, root, datasets, max_bytes, chunk_bytes, expiry_s):
        self.root = Path(root)
        self.datasets = datasets           # DatasetCatalog
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        self.expiry_s = expiry_s
        self._lock = threading.Lock()
        self._writing = set()              # ids with a write in progress (one writer per upload)

    # ---- records --------------------------------------------------------------------------------
    def _dir(self, upload_id):
        return self.root / check_id(upload_id, 'upload_id')

    def _data(self, rec):
        return self._dir(rec['id']) / ('data' + Path(rec['filename']).suffix.lower())

    def _read(self, upload_id):
        rec = read_record(self._dir(upload_id) / 'upload.json')
        if not isinstance(rec, dict) or rec.get('id') != upload_id:
            raise NotFound(f'no upload {upload_id!r} (finished long ago, cancelled or expired)', field='upload_id')
        return rec

    def _save(self, rec):
        atomic_write_json(self._dir(rec['id']) / 'upload.json', rec)
        return rec

    def view(self, rec):
        data = self._data(rec)
        try:
            st = data.stat()
            received, touched = st.st_size, max(st.st_mtime, rec['updated_at'])
        except FileNotFoundError:
            received, touched = (rec['size'] if rec['state'] == 'done' else 0), rec['updated_at']
        return {**rec, 'received': received, 'chunk_bytes': self.chunk_bytes,
                'expires_at': touched + self.expiry_s if rec['state'] == 'uploading' else None}

    def get(self, upload_id):
        return self.view(self._read(upload_id))

    # ---- create, list, cancel -------------------------------------------------------------------
    def create(self, dataset, filename, size, replace=False, client_key=None):
        folder = self.datasets.folder(dataset)
        filename = check_file_name(filename)
        if media_kind(filename) is None:
            raise Invalid(f'{filename}: not a media type we can read (images: png, jpg, webp, ...; videos: mp4, '
                          f'mov, mkv, webm, ...)', field='filename')
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise BadRequest('size must be the file size in bytes (a whole number above 0)', field='size')
        if size > self.max_bytes:
            raise Invalid(f'{filename} is {size} bytes; uploads are limited to {self.max_bytes} bytes '
                          f'(setting max_upload_bytes)', field='size')
        if client_key is not None and (not isinstance(client_key, str) or len(client_key) > 500):
            raise BadRequest('client_key must be text of at most 500 characters', field='client_key')
        self.sweep()
        if client_key:
            for rec in self._all():
                if rec['state'] == 'uploading' and rec['dataset'] == folder.name and rec['client_key'] == client_key \
                        and rec['size'] == size and rec['filename'] == filename:
                    return self.view(rec), False
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if size > free:
            raise Invalid(f'{filename} needs {size} bytes; the data disk has {free} free', field='size')
        now = time.time()
        rec = {'id': 'u' + time.strftime('%Y%m%d-%H%M%S') + '-' + secrets.token_hex(4), 'dataset': folder.name,
               'filename': filename, 'size': size, 'replace': bool(replace), 'client_key': client_key or None,
               'state': 'uploading', 'created_at': now, 'updated_at': now, 'file': None, 'reason': None}
        self._dir(rec['id']).mkdir(parents=True)
        self._data(rec).touch()
        return self.view(self._save(rec)), True

    def _all(self):
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(self.root.iterdir()):
            rec = read_record(d / 'upload.json') if d.is_dir() else None
            if isinstance(rec, dict) and rec.get('id') == d.name:
                out.append(rec)
        return out

    def list(self, dataset=None):
        self.sweep()
        return [self.view(r) for r in self._all() if dataset is None or r['dataset'] == dataset]

    def cancel(self, upload_id):
        rec = self._read(upload_id)
        with self._lock:
            if upload_id in self._writing:
                raise Conflict(f'upload {upload_id} is receiving data; try again when that request ends',
                               field='upload_id')
            shutil.rmtree(self._dir(upload_id), ignore_errors=True)
        return {'id': rec['id'], 'cancelled': rec['state'] == 'uploading'}

    def sweep(self):
        """Remove unfinished uploads untouched for expiry_s, and finished records after an hour."""
        now = time.time()
        for rec in self._all():
            v = self.view(rec)
            stale = v['expires_at'] is not None and v['expires_at'] < now
            old = rec['state'] != 'uploading' and rec['updated_at'] + FINISHED_KEEP_S < now
            if (stale or old) and rec['id'] not in self._writing:
                shutil.rmtree(self._dir(rec['id']), ignore_errors=True)

    # ---- receiving data -------------------------------------------------------------------------
    def write(self, upload_id, offset, stream, length):
        """Append `length` bytes read from `stream` at `offset`, which must equal what the server has.
        Bytes that arrive are kept even if the stream breaks off (the client resumes after them).
        Returns the upload's view; the last byte finishes it (state done or rejected)."""
        rec = self._read(upload_id)
        if rec['state'] != 'uploading':
            raise Conflict(f'upload {upload_id} is {rec["state"]}', field='upload_id')
        with self._lock:
            if upload_id in self._writing:
                raise Conflict(f'upload {upload_id} is already receiving data in another request', field='upload_id')
            self._writing.add(upload_id)
        try:
            data = self._data(rec)
            have = data.stat().st_size
            if offset != have:
                raise Conflict(f'upload {upload_id} has {have} bytes; send from offset {have}, not {offset}',
                               field='offset')
            if length is None or length < 0:
                raise BadRequest('the request needs a Content-Length', field='body')
            if have + length > rec['size']:
                raise BadRequest(f'{length} bytes at offset {offset} go past the declared size {rec["size"]}',
                                 field='body')
            self._copy(stream, data, have, length)
            if data.stat().st_size == rec['size']:
                return self._finish(rec, data)
            return self.view(rec)
        finally:
            with self._lock:
                self._writing.discard(upload_id)

    @staticmethod
    def _copy(stream, path, offset, length):
        """Stream to disk in COPY_BLOCK pieces (never the whole chunk in memory); flushed before returning."""
        with open(path, 'r+b') as f:
            f.seek(offset)
            left = length
            try:
                while left > 0:
                    block = stream.read(min(COPY_BLOCK, left))
                    if not block:
                        break
                    f.write(block)
                    left -= len(block)
            finally:
                f.flush()
                os.fsync(f.fileno())
        if left:
            raise BadRequest(f'the request ended after {length - left} of {length} bytes; '
                             f'resume from offset {offset + length - left}', field='body')

    def _finish(self, rec, data):
        """Check the content; move a good file into the dataset, delete a bad one with the reason."""
        now = time.time()
        try:
            info = probe(data)
        except MediaError as e:
            data.unlink(missing_ok=True)
            rec = self._save({**rec, 'state': 'rejected', 'updated_at': now,
                              'reason': f'{rec["filename"]}: {e.reason}; the file was removed'})
            raise Invalid(rec['reason'], field='file')
        try:
            folder = self.datasets.folder(rec['dataset'])
        except NotFound:
            data.unlink(missing_ok=True)
            self._save({**rec, 'state': 'rejected', 'updated_at': now, 'reason': 'the dataset was deleted'})
            raise
        target = place_file(data, folder, rec['filename'], replace=rec['replace'])
        rec = self._save({**rec, 'state': 'done', 'updated_at': now, 'file': target.name,
                          'media': {'kind': info.kind, 'width': info.width, 'height': info.height,
                                    'frames': info.frames, 'fps': info.fps, 'duration': info.duration}})
        return self.view(rec)
