"""BackupService: a snapshot every `backup_interval_h` hours in a thread of its own, on demand (run_now),
the list of snapshots and the state of the last run.

    backups = BackupService(settings, paths)
    backups.start()            # the schedule (python -m api does this through Studio.start)
    backups.run_now()          # a snapshot in the background; Conflict while one runs
    backups.view()             # settings, last run (time, size, files, failure), snapshots newest first

The last run is recorded in <data>/backup_status.json, in the data root and not in the backup folder,
so that a share that is not mounted is reported as the failure it is. A configured `backup_dir` must
exist (a missing mount point is never silently replaced by a folder on the local disk); the default,
<data>/backups, is created. Backups never take a lock of the studio: snapshot.py explains why the copy
is consistent without one.
"""

import logging
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from utils.fsutil import atomic_write_json, is_within

from ..errors import Conflict
from ..records import clean_temp_files, read_record
from . import retention, snapshot

log = logging.getLogger(__name__)

CHECK_S = 60.0                 # how often the thread asks whether a backup is due (first: a minute after start)
RETRY_FAILED_S = 3600.0        # a failed run is tried again after this long (or the interval, if shorter)


def default_dir(data_root: Path) -> Path:
    return Path(data_root) / 'backups'


def stamp_of(name):
    m = snapshot.NAME_RE.match(name)
    return datetime.strptime(m.group(1), '%Y%m%dT%H%M%SZ').replace(tzinfo=timezone.utc) if m else None


class BackupService:
    def __init__(self, settings, paths, clock=time.time):
        self.settings = settings
        self.root = paths.root
        self.default = default_dir(self.root)
        self.dir = Path(settings.backup_dir).expanduser().resolve() if settings.backup_dir else self.default
        self.status_file = self.root / 'backup_status.json'
        clean_temp_files(self.root, self.status_file.name)     # a crash mid-write leaves its temp file
        self.clock = clock
        self._lock = threading.Lock()
        self._running = None
        self._summaries = {}            # snapshot name -> its manifest's summary (snapshots never change)
        self._halt = threading.Event()
        self._thread = None

    # ---- views ------------------------------------------------------------------------------------
    def snapshots(self):
        """Complete snapshots, newest first: name, time, totals."""
        try:
            names = [p.name for p in self.dir.iterdir() if p.is_dir() and stamp_of(p.name)]
        except OSError:
            return []
        out = []
        for name in sorted(names, key=lambda n: (stamp_of(n), len(n), n), reverse=True):
            if name not in self._summaries:
                try:
                    m = snapshot.read_manifest(self.dir / name)
                except (OSError, ValueError):
                    continue
                self._summaries[name] = {'name': name, 'time': m['started_at'], 'finished_at': m['finished_at'],
                                         'include_media': m['include_media'], **m['totals'],
                                         'skipped': len(m['skipped'])}
            out.append(self._summaries[name])
        return out

    def status(self):
        return read_record(self.status_file) or {}

    def view(self):
        s = self.settings
        status = self.status()
        return {'dir': str(self.dir), 'inside_data_root': is_within(self.dir, self.root),
                'interval_h': s.backup_interval_h, 'keep_daily': s.backup_keep_daily,
                'keep_weekly': s.backup_keep_weekly, 'include_media': s.backup_include_media,
                'running': self._running, 'last': status.get('last'), 'last_ok': status.get('last_ok'),
                'next_at': self.next_at(), 'snapshots': self.snapshots()}

    # ---- schedule ---------------------------------------------------------------------------------
    def next_at(self):
        """When the schedule will next take a snapshot (None: the schedule is off)."""
        hours = self.settings.backup_interval_h
        if hours <= 0:
            return None
        interval = hours * 3600
        last = self.status().get('last') or {}
        ok = self.status().get('last_ok') or {}
        if last and not last.get('ok'):
            return last['started_at'] + min(interval, RETRY_FAILED_S)
        return ok['started_at'] + interval if ok else self.clock()

    def due(self):
        at = self.next_at()
        return at is not None and at <= self.clock()

    def start(self):
        if self.settings.backup_interval_h <= 0 or self._thread:
            return
        self._thread = threading.Thread(target=self._loop, name='odeo-backups', daemon=True)
        self._thread.start()

    def shutdown(self):
        self._halt.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self):
        while not self._halt.wait(CHECK_S):
            if self.due() and not self._running:
                try:
                    self.run()
                except Conflict:
                    pass

    # ---- runs -------------------------------------------------------------------------------------
    def run_now(self):
        """Start a snapshot in the background; the view with `running` set. Conflict while one runs."""
        self._claim()
        threading.Thread(target=self._run_claimed, name='odeo-backup-now', daemon=True).start()
        return self.view()

    def run(self):
        """Take a snapshot now, in this thread; the record of the run (ok or not)."""
        self._claim()
        return self._run_claimed()

    def _claim(self):
        with self._lock:
            if self._running:
                raise Conflict(f'a backup is already running (started {self._running["started_at"]:.0f})')
            self._running = {'started_at': self.clock()}

    def _run_claimed(self):
        started = self._running['started_at']
        record = {'started_at': started, 'dir': str(self.dir), 'ok': False}
        try:
            record.update(self._take())
            record['ok'] = True
        except Exception as e:              # recorded and shown in the UI; the studio goes on
            log.exception('backup into %s failed', self.dir)
            record['error'] = f'{type(e).__name__}: {e}'
        finally:
            record['finished_at'] = self.clock()
            record['seconds'] = round(record['finished_at'] - started, 3)
            status = self.status()
            status['last'] = record
            if record['ok']:
                status['last_ok'] = record
            try:
                atomic_write_json(self.status_file, status)
            finally:
                self._running = None
        return record

    def _take(self):
        if self.dir == self.default:
            self.dir.mkdir(parents=True, exist_ok=True)
        elif not self.dir.is_dir():
            raise FileNotFoundError(f'backup folder {self.dir} does not exist (is the share mounted?)')
        for left in self.dir.glob(f'*{snapshot.PARTIAL}'):       # runs a crash interrupted
            if stamp_of(left.name[:-len(snapshot.PARTIAL)]):
                shutil.rmtree(left, ignore_errors=True)
        done = self.snapshots()
        previous = None
        if done:
            try:
                previous = (self.dir / done[0]['name'], snapshot.read_manifest(self.dir / done[0]['name']))
            except (OSError, ValueError):
                previous = None
        name = self._new_name()
        manifest = snapshot.take(self.root, self.dir / name, include_media=self.settings.backup_include_media,
                                 exclude=(self.dir, self.default), previous=previous)
        deleted = self.prune()
        return {'name': name, **manifest['totals'], 'skipped': manifest['skipped'][:20], 'deleted': deleted}

    def _new_name(self):
        base = datetime.fromtimestamp(self.clock(), timezone.utc).strftime('%Y%m%dT%H%M%SZ')
        name, n = base, 0
        while (self.dir / name).exists() or (self.dir / f'{name}{snapshot.PARTIAL}').exists():
            n += 1
            name = f'{base}-{n}'
        return name

    def prune(self):
        """Delete the snapshots the retention policy does not keep; their names."""
        by_name = {s['name']: stamp_of(s['name']) for s in self.snapshots()}
        # several snapshots in one second share a stamp: order them by their suffix
        stamps = {n: t.replace(microsecond=min(999999, int(snapshot.NAME_RE.match(n).group(2) or 0)))
                  for n, t in by_name.items()}
        gone = retention.to_delete(list(stamps.values()), self.settings.backup_keep_daily,
                                   self.settings.backup_keep_weekly)
        deleted = sorted(n for n, t in stamps.items() if t in gone)
        for n in deleted:
            shutil.rmtree(self.dir / n, ignore_errors=True)
            self._summaries.pop(n, None)
        return deleted
