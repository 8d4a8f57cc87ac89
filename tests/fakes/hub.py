"""A stand-in for the Hugging Face Hub on 127.0.0.1, speaking the endpoints huggingface_hub (2.x) uses:

    GET  /api/models/<repo>[/revision/<rev>][?blobs=True]   model info: sha, siblings [{rfilename, size, blobId,
                                                             lfs: {sha256, size, pointerSize}}] (blobs: sizes)
    HEAD /<repo>/resolve/<rev>/<path>                       X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size,
    GET  /<repo>/resolve/<rev>/<path>   (Range: bytes=N-)   Content-Length; a Range gets 206 + Content-Range

Repositories are folders; `publish(repo, folder)` adds a revision (a new commit sha) and moves `main` to it.
Files whose name ends in .safetensors, .pth, .bin or .model are LFS files (sha256 in the listing), the rest
are plain git blobs (blobId: the git sha1). Faults for tests: `delay` slows every chunk; `cut_after(path, n)` closes the connection
after n bytes of the next GET of that file, `corrupt_once(path)` serves the file once with one byte flipped.
`requests` records (method, path, headers) of every request.

    hub = FakeHub().start(); hub.publish('Wan-AI/Wan2.1-T2V-1.3B', folder)
    env['HF_ENDPOINT'] = hub.url
"""

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = ('.safetensors', '.pth', '.bin', '.model')


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self):
        self.repos = {}                 # repo -> {'refs': {'main': sha}, 'commits': {sha: {path: bytes}}}
        self.requests = []
        self.faults = {}                # path -> ('cut', n) | ('corrupt',)
        self.lock = threading.Lock()
        self.server = None
        self.chunk = 64 * 1024          # bytes written at a time, with `delay` seconds before each (a slow line)
        self.delay = 0.0

    # ---- content ------------------------------------------------------------------------------------
    def publish(self, repo, folder, changes=None):
        """A new commit of `repo` holding the files of `folder` (hidden ones skipped) with `changes`
        ({path: bytes}) on top; `main` moves to it. Returns the commit sha."""
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*'))
                 if p.is_file() and not any(part.startswith('.') for part in p.relative_to(folder).parts)}
        files.update(changes or {})
        with self.lock:
            entry = self.repos.setdefault(repo, {'refs': {}, 'commits': {}})
            sha = hashlib.sha1(f'{repo}:{len(entry["commits"])}'.encode()
                               + b''.join(hashlib.sha256(v).digest() for v in files.values())).hexdigest()
            entry['commits'][sha] = files
            entry['refs']['main'] = sha
        return sha

    def cut_after(self, path, n):
        self.faults[path] = ('cut', n)

    def corrupt_once(self, path):
        self.faults[path] = ('corrupt',)

    def commit(self, repo, rev):
        entry = self.repos.get(repo)
        if entry is None:
            return None, None
        sha = entry['refs'].get(rev, rev)
        return sha, entry['commits'].get(sha)

    # ---- server -------------------------------------------------------------------------------------
    def start(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.handle(self, head=False)

            def do_HEAD(self):
                hub.handle(self, head=True)

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name='fake-hub').start()
        return self

    @property
    def url(self):
        return f'http://127.0.0.1:{self.server.server_address[1]}'

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def ranges(self, path):
        """The Range headers of the GETs of one file, in order (None: a request without one)."""
        return [h.get('range') for m, p, h in self.requests if m == 'GET' and p.endswith('/' + path)]

    def handle(self, req, head):
        url = urlsplit(req.path)
        path = unquote(url.path)
        with self.lock:
            self.requests.append((req.command, path, {k.lower(): v for k, v in req.headers.items()}))
        m = re.fullmatch(r'/api/models/(.+?)(?:/revision/([^/]+))?', path)
        if m:
            return self.info(req, m.group(1), m.group(2) or 'main', 'blobs' in parse_qs(url.query))
        m = re.fullmatch(r'/(.+?)/resolve/([^/]+)/(.+)', path)
        if m:
            return self.resolve(req, m.group(1), m.group(2), m.group(3), head)
        self.send(req, 404, b'{"error": "not found"}', {'Content-Type': 'application/json'})

    def send(self, req, status, body, headers, head=False):
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        if 'Content-Length' not in headers:
            req.send_header('Content-Length', str(len(body)))
        req.end_headers()
        if not head:
            req.wfile.write(body)

    def info(self, req, repo, rev, blobs):
        sha, files = self.commit(repo, rev)
        if files is None:
            code = 'RepoNotFound' if repo not in self.repos else 'RevisionNotFound'
            return self.send(req, 404, json.dumps({'error': f'{code}: {repo}@{rev}'}).encode(),
                             {'Content-Type': 'application/json', 'X-Error-Code': code})
        siblings = []
        for name, data in sorted(files.items()):
            s = {'rfilename': name}
            if blobs:
                s.update(size=len(data), blobId=git_blob_sha1(data))
                if name.endswith(LFS_SUFFIXES):
                    s['lfs'] = {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data), 'pointerSize': 134}
            siblings.append(s)
        body = {'_id': repo, 'id': repo, 'modelId': repo, 'sha': sha, 'private': False, 'gated': False,
                'disabled': False, 'downloads': 0, 'likes': 0, 'tags': [], 'siblings': siblings}
        self.send(req, 200, json.dumps(body).encode(), {'Content-Type': 'application/json'})

    def resolve(self, req, repo, rev, name, head):
        sha, files = self.commit(repo, rev)
        if files is None or name not in files:
            code = 'EntryNotFound' if files is not None else 'RevisionNotFound'
            return self.send(req, 404, b'{"error": "not found"}', {'X-Error-Code': code,
                                                                  'Content-Type': 'application/json'}, head)
        data = files[name]
        lfs = name.endswith(LFS_SUFFIXES)
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        headers = {'X-Repo-Commit': sha, 'ETag': f'"{etag}"', 'Accept-Ranges': 'bytes',
                   'Content-Type': 'application/octet-stream'}
        if lfs:
            headers.update({'X-Linked-Etag': f'"{etag}"', 'X-Linked-Size': str(len(data))})
        if head:
            headers['Content-Length'] = str(len(data))
            return self.send(req, 200, b'', headers, head=True)
        fault = None
        with self.lock:
            if name in self.faults:
                fault = self.faults.pop(name)
        if fault and fault[0] == 'corrupt':
            data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
        start = 0
        m = re.fullmatch(r'bytes=(\d+)-', req.headers.get('Range', ''))
        if m and int(m.group(1)) < len(data):
            start = int(m.group(1))
            headers['Content-Range'] = f'bytes {start}-{len(data) - 1}/{len(data)}'
        body = data[start:]
        headers['Content-Length'] = str(len(body))
        req.send_response(206 if start else 200)
        for k, v in headers.items():
            req.send_header(k, v)
        req.end_headers()
        limit = fault[1] if fault and fault[0] == 'cut' else None
        sent = 0
        try:
            while sent < len(body) and (limit is None or sent < limit):
                piece = body[sent:sent + min(self.chunk, (limit - sent) if limit is not None else self.chunk)]
                if self.delay:
                    time.sleep(self.delay)
                req.wfile.write(piece)
                sent += len(piece)
            req.wfile.flush()
        except OSError:
            return
        if limit is not None and sent < len(body):
            req.close_connection = True           # the client sees a body shorter than Content-Length
