"""The trainer's side of events.jsonl (format in docs/architecture.md).

Only global rank 0 writes. Each event is one JSON line appended with a single write() on an
O_APPEND descriptor, so a reader tailing the file by byte offset sees whole lines (or, at most, a
last line still without its newline, which readers skip until it is complete).
"""

import json
import os
import threading
import time


class EventWriter:
    """Heartbeats mean "the main loop is moving": they are written every `heartbeat_interval` seconds
    only while the loop has called progress_made() (any event counts too) within `stall_timeout`
    seconds. A rank stuck in a collective forever therefore goes quiet, and the studio's heartbeat
    timeout catches it, while a long but live phase (a big save, a slow first step) keeps beating."""

    def __init__(self, run_dir, enabled=True, heartbeat_interval=10.0, stall_timeout=None):
        self.enabled = enabled
        self.stall_timeout = float(os.environ.get('ODEO_STALL_TIMEOUT', 1200)) if stall_timeout is None else stall_timeout
        self.last_progress = time.time()
        self.path = os.path.join(run_dir, 'events.jsonl')
        self.heartbeat_interval = heartbeat_interval
        self._lock = threading.Lock()
        self._fd = None
        self._stop = threading.Event()
        self._thread = None
        if enabled:
            os.makedirs(run_dir, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, type, **fields):
        if not self.enabled:
            return
        now = time.time()
        if type != 'heartbeat':
            self.last_progress = now
        line = json.dumps({'time': round(now, 3), 'type': type, **fields}, default=_plain) + '\n'
        with self._lock:
            if self._fd is not None:
                os.write(self._fd, line.encode('utf-8'))

    def status(self, state, message=''):
        self.emit('status', state=state, message=message)

    def warning(self, message):
        """Something the person running this should look at; the run goes on."""
        self.emit('warning', message=message)

    def progress(self, **fields):
        self.emit('progress', **fields)

    def metric(self, name, step, value, epoch=None):
        self.emit('metric', name=name, step=step, epoch=epoch, value=float(value))

    def artifact(self, kind, path, epoch=None, step=None, **extra):
        self.emit('artifact', kind=kind, path=str(path), epoch=epoch, step=step, **extra)

    def start_heartbeat(self):
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._beat, name='heartbeat', daemon=True)
        self._thread.start()

    def progress_made(self):
        """The main loop is alive (call it from long phases that emit nothing else)."""
        self.last_progress = time.time()

    def _beat(self):
        while not self._stop.wait(self.heartbeat_interval):
            if time.time() - self.last_progress <= self.stall_timeout:
                self.emit('heartbeat')

    def close(self):
        self._stop.set()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _plain(value):
    if hasattr(value, 'item'):
        return value.item()
    return str(value)
