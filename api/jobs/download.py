"""The `download` job: fetch a model's files from a Hugging Face hub (or a mirror: HF_ENDPOINT), resumably,
each verified before it counts.

    python -m api.jobs.download --run_dir <data>/runs/models/<job-id>

Reads job.json's `download` section (written by api/services/models/service.py): {name, folder, staging,
sources: [{repo, revision, commit, files: [{repo_path, path, size, sha256, blob_id}]}], total_bytes}. The plan
is pinned to commits, so a resumed download never mixes two revisions. Per file: bytes go to
<staging>/<path>.part, a GET through huggingface_hub's HTTP session with `Range: bytes=<bytes on disk>-`
(so an interrupted file, or a studio restart, continues where it stopped; a dropped connection is retried
the same way); the finished .part is checked against the hub's sha256 (LFS files) or git blob sha1 (small
files) and size, and only then renamed to its name. A file that does not verify is named in the log and
the status message and fetched again from its first byte, twice at most. When every file is in place the
manifest .odeo-model.json is written and the staging folder renamed to the model folder in one step, so
the catalog never sees a half model.

Events: status starting -> downloading -> done | stopped | failed; progress {phase: download, step/total_steps
(bytes), bytes_done, bytes_total, bytes_per_s, eta_s, file, files_done, files_total} at most every 0.5 s;
heartbeats. Stops between chunks on control/stop or SIGTERM (exit 0, `stopped`; the .part files stay). Exit 2
when the disk is too small for what is left, 1 when a file cannot be fetched or verified.
"""

import hashlib
import json
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path

from api.jobs.control import Control, JobError, Stopped, job_main
from api.services.models.catalog import MANIFEST
from api.services.models.hub import InsufficientStorage, check_space
from api.services.models.service import staged_bytes
from utils.fsutil import atomic_write_json

CHUNK = 1024 * 1024
NETWORK_TRIES = 8               # consecutive failures without a byte of progress before a file fails
VERIFY_TRIES = 3                # fetches of one file whose bytes do not verify
READ_TIMEOUT_S = 60.0
RETRY_STATUS = (408, 429, 500, 502, 503, 504)


class Progress:
    """Bytes done over the whole plan; speed over the last ~10 s; an event at most every 0.5 s."""

    def __init__(self, events, total, done, files_total):
        self.events, self.total, self.done = events, total, done
        self.files_total, self.files_done, self.file = files_total, 0, None
        self.window = deque([(time.monotonic(), done)])
        self.last_emit = 0.0

    def add(self, n, force=False):
        self.done += n
        now = time.monotonic()
        self.window.append((now, self.done))
        while len(self.window) > 2 and now - self.window[0][0] > 10.0:
            self.window.popleft()
        if force or now - self.last_emit >= 0.5:
            self.emit(now)

    def emit(self, now=None):
        now = time.monotonic() if now is None else now
        self.last_emit = now
        (t0, b0), (t1, b1) = self.window[0], self.window[-1]
        rate = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        left = max(0, self.total - self.done)
        self.events.progress(phase='download', step=self.done, total_steps=self.total, bytes_done=self.done,
                             bytes_total=self.total, bytes_per_s=round(rate, 1),
                             eta_s=round(left / rate, 1) if rate > 0 else None, file=self.file,
                             files_done=self.files_done, files_total=self.files_total)


def hasher(f):
    """(hash object, expected hex digest, what it is): sha256 for LFS files, else the git blob sha1."""
    if f.get('sha256'):
        return hashlib.sha256(), f['sha256'], 'sha256'
    h = hashlib.sha1(b'blob %d\0' % (f['size'] or 0))
    return h, f.get('blob_id'), 'git sha1'


def verify_problem(part: Path, f, h, expected, what):
    size = part.stat().st_size
    if f['size'] is not None and size != f['size']:
        return f'{f["path"]} has {size} bytes, the hub lists {f["size"]} (truncated or corrupt)'
    if expected and h.hexdigest() != expected:
        return f'{f["path"]} {what} {h.hexdigest()[:16]}... does not match the hub\'s {expected[:16]}... (corrupt)'
    return None


def fetch_part(source, f, part: Path, h, progress, control):
    """Bring part up to the whole file, resuming from the bytes on disk (each hashed once into h)."""
    import httpx2
    from huggingface_hub import hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
    url = hf_hub_url(source['repo'], f['repo_path'], revision=source['commit'])
    have = part.stat().st_size if part.exists() else 0
    if f['size'] is not None and have > f['size']:
        part.unlink()
        progress.add(-have)
        have = 0
    with open(part, 'rb') if have else open(os.devnull, 'rb') as old:
        for block in iter(lambda: old.read(CHUNK), b''):
            h.update(block)
    failures = 0
    while f['size'] is None or have < f['size']:
        headers = build_hf_headers()
        if have:
            headers['Range'] = f'bytes={have}-'
        got = 0
        try:
            with get_session().stream('GET', url, headers=headers,
                                      timeout=httpx2.Timeout(30.0, read=READ_TIMEOUT_S)) as r:
                hf_raise_for_status(r)
                mode = 'ab'
                if have and r.status_code == 200:        # the server ignored the Range: start over
                    progress.add(-have)
                    h, _, _ = hasher(f)
                    have, mode = 0, 'wb'
                with open(part, mode) as out:
                    for chunk in r.iter_bytes():           # as received: a cut loses nothing
                        control.check()
                        out.write(chunk)
                        h.update(chunk)
                        have += len(chunk)
                        got += len(chunk)
                        progress.add(len(chunk))
            if f['size'] is None:
                break
            if have < f['size']:
                raise OSError(f'the connection ended after {have} of {f["size"]} bytes')
        except (HfHubHTTPError, httpx2.TransportError, OSError) as e:
            why = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
            status = getattr(getattr(e, 'response', None), 'status_code', None)
            if isinstance(e, HfHubHTTPError) and status not in RETRY_STATUS:
                raise JobError(f'{f["path"]}: {why}') from None
            failures = 0 if got else failures + 1
            if failures >= NETWORK_TRIES:
                raise JobError(f'{f["path"]}: {why} ({NETWORK_TRIES} tries in a row)') from None
            print(f'{f["path"]}: {why}; resuming from byte {have}', flush=True)
            time.sleep(min(30.0, 0.5 * 2 ** failures) if failures else 0.2)
    return h


def fetch(source, f, staging: Path, progress, control, events):
    dest = staging / f['path']
    if dest.is_file() and (f['size'] is None or dest.stat().st_size == f['size']):
        return                                              # verified before it got its name
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + '.part')
    for attempt in range(1, VERIFY_TRIES + 1):
        h, expected, what = hasher(f)
        h = fetch_part(source, f, part, h, progress, control)
        problem = verify_problem(part, f, h, expected, what)
        if problem is None:
            os.replace(part, dest)
            return
        print(f'{problem}; fetching it again ({attempt} of {VERIFY_TRIES})', flush=True)
        events.status('downloading', f'{problem}; fetching it again')
        progress.add(-part.stat().st_size, force=True)
        part.unlink()
    raise JobError(f'{problem}, {VERIFY_TRIES} times; the hub or mirror serves a broken file')


def manifest(job, d):
    return {'kind': d['kind'], 'variant': d['variant'], 'layout': d['layout'], 'job_id': job['id'],
            'endpoint': d.get('endpoint'), 'downloaded_at': time.time(),
            'sources': [{'repo': s['repo'], 'revision': s['revision'], 'commit': s['commit'],
                         'files': [{k: f[k] for k in ('path', 'repo_path', 'size', 'sha256', 'blob_id')}
                                   for f in s['files']]} for s in d['sources']]}


def run(run_dir, events):
    run_dir = Path(run_dir)
    job = json.loads((run_dir / 'job.json').read_text(encoding='utf-8'))
    d = job['download']
    folder, staging = Path(d['folder']), Path(d['staging'])
    control = Control(run_dir, alive=events.progress_made)
    signal.signal(signal.SIGTERM, control.on_signal)
    if (folder / MANIFEST).is_file() and not staging.exists():     # finished before the studio saw it
        events.status('done', f'{folder} is complete')
        return 0
    files = [(s, f) for s in d['sources'] for f in s['files']]
    staging.mkdir(parents=True, exist_ok=True)
    have = staged_bytes(staging, d)
    events.status('starting', f'{len(files)} file(s), {d["total_bytes"]} bytes; {have} already on disk')
    try:
        check_space(staging, d['total_bytes'] - have)
    except InsufficientStorage as e:
        events.status('failed', e.message)
        return 2
    endpoint = os.environ.get('HF_ENDPOINT') or 'https://huggingface.co'
    events.status('downloading', f'{", ".join(s["repo"] + "@" + s["commit"][:12] for s in d["sources"])} '
                                 f'from {endpoint}')
    progress = Progress(events, d['total_bytes'], have, len(files))
    progress.emit()
    try:
        for s, f in files:
            progress.file = f['path']
            fetch(s, f, staging, progress, control, events)
            progress.files_done += 1
            print(f'[{progress.files_done}/{len(files)}] {f["path"]} verified', flush=True)
    except Stopped:
        progress.emit()
        events.status('stopped', f'stopped after {progress.done} of {d["total_bytes"]} bytes; '
                                 'downloading again continues from there')
        return 0
    except JobError as e:
        events.status('failed', str(e))
        return 1
    progress.emit()
    atomic_write_json(staging / MANIFEST, manifest(job, d))
    os.replace(staging, folder)
    events.artifact('model', str(folder))
    events.status('done', f'{d["name"]}: {len(files)} file(s) verified, {d["total_bytes"]} bytes in {folder}')
    return 0


def main(argv=None):
    return job_main(run, 'Download a model from a Hugging Face hub (a studio job).', argv)


if __name__ == '__main__':
    sys.exit(main())
