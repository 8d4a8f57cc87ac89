"""Read a job's events.jsonl incrementally (by byte offset) and fold it into what the UI shows.

Only complete lines are consumed: a final line without a newline is still being written and is read
on the next poll. Unknown event types, unknown fields and lines that are not JSON are skipped. One
EventTail per job is cached by the monitor, so a poll with nothing new costs one stat().
"""

import bisect
import json
import math
import os
import threading
import time
from pathlib import Path

READ_CHUNK = 4 * 1024 * 1024
TERMINAL_STATUSES = ('done', 'stopped', 'failed')
LOSS = 'train/loss'                 # the series whose newest point progress views show as `loss`


class Series:
    """One metric: steps ascending. A point at or before the last step (a resumed run redoing steps)
    replaces everything from that step on, so the series always shows the run as it now stands."""

    def __init__(self):
        self.steps, self.values, self.epochs = [], [], []

    def add(self, step, value, epoch):
        if self.steps and step <= self.steps[-1]:
            cut = bisect.bisect_left(self.steps, step)
            del self.steps[cut:], self.values[cut:], self.epochs[cut:]
        self.steps.append(step)
        self.values.append(value)
        self.epochs.append(epoch)

    def after(self, step):
        start = 0 if step is None else bisect.bisect_right(self.steps, step)
        return {'steps': self.steps[start:], 'values': self.values[start:], 'epochs': self.epochs[start:]}


def _finite(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


MAX_WARNINGS = 20                   # distinct warning messages kept per job


class EventState:
    def __init__(self):
        self.status = None          # last status event
        self.status_end = 0
        self.failure = None         # message of the last `failed` status
        self.train = None           # last train progress event
        self.cache = None           # last cache progress event
        self.series = {}
        self.artifacts = {}         # path -> artifact event (last wins)
        self.warnings = []          # messages of `warning` events, each once, oldest first
        self.resources = {}         # rank -> its newest `resources` event (device use, every rank of every node)
        self.last_event_time = None
        self.last_heartbeat = None
        self.count = 0
        self.skipped = 0

    def fold(self, ev, end=0):
        kind = ev.get('type')
        t = _finite(ev.get('time'))
        self.count += 1
        self.last_event_time = t if t is not None else self.last_event_time
        if kind == 'status':
            self.status = ev
            self.status_end = end       # byte offset just past this line: which attempt wrote it
            if ev.get('state') == 'failed':
                self.failure = ev.get('message')
        elif kind == 'progress':
            if ev.get('phase') == 'cache':
                self.cache = ev
            else:
                self.train = ev
        elif kind == 'metric':
            name, step = ev.get('name'), ev.get('step')
            if isinstance(name, str) and isinstance(step, int):
                self.series.setdefault(name, Series()).add(step, _finite(ev.get('value')), ev.get('epoch'))
        elif kind == 'artifact':
            if isinstance(ev.get('path'), str):
                self.artifacts[ev['path']] = ev
        elif kind == 'heartbeat':
            self.last_heartbeat = t
        elif kind == 'resources':
            if isinstance(ev.get('rank'), int):
                self.resources[ev['rank']] = ev
        elif kind == 'warning':
            msg = ev.get('message')
            if isinstance(msg, str) and msg not in self.warnings and len(self.warnings) < MAX_WARNINGS:
                self.warnings.append(msg)
        # any other type: ignored, as the protocol asks


class EventTail:
    def __init__(self, path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self._reset()

    def _reset(self, ident=None):
        self.offset = 0
        self.ident = ident
        self.state = EventState()

    def refresh(self) -> EventState:
        with self.lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                if self.offset:
                    self._reset()
                return self.state
            ident = (st.st_dev, st.st_ino)
            if ident != self.ident or st.st_size < self.offset:
                self._reset(ident)
            if st.st_size > self.offset:
                self._read(st.st_size)
            return self.state

    def _read(self, size):
        with open(self.path, 'rb') as f:
            f.seek(self.offset)
            while self.offset < size:
                chunk = f.read(min(READ_CHUNK, size - self.offset))
                end = chunk.rfind(b'\n')
                if end < 0:
                    if len(chunk) < READ_CHUNK:
                        return          # an unfinished last line: read it next time
                    end = len(chunk) - 1  # a giant line: skip it rather than stall
                pos = self.offset
                for line in chunk[:end + 1].split(b'\n')[:-1]:
                    pos += len(line) + 1
                    self._fold_line(line, pos)
                self.offset += end + 1
                f.seek(self.offset)

    def _fold_line(self, line, end):
        if not line.strip():
            return
        try:
            ev = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            self.state.skipped += 1
            return
        if isinstance(ev, dict) and isinstance(ev.get('type'), str):
            self.state.fold(ev, end)
        else:
            self.state.skipped += 1


PROGRESS_FIELDS = ('step', 'total_steps', 'epoch', 'total_epochs', 'epoch_step', 'steps_per_epoch',
                   'examples_per_s', 'steps_per_s', 'eta_s')


def progress_view(state: EventState, now=None):
    """The progress panel: trainer status, step/total, epoch, speed and an ETA counted down since the event."""
    now = time.time() if now is None else now
    status = state.status or {}
    out = {'status': status.get('state'), 'message': status.get('message'), 'failure': state.failure,
           'phase': None, 'fraction': None, 'cache': None,
           'last_event_age_s': _age(now, state.last_event_time),
           'heartbeat_age_s': _age(now, state.last_heartbeat), 'loss': _latest(state.series.get(LOSS)),
           'warnings': list(state.warnings), 'resources': resources_view(state, now)}
    for name in PROGRESS_FIELDS:
        out[name] = None
    if state.cache:
        c = state.cache
        out['phase'] = 'cache'
        out['cache'] = {'done': c.get('done'), 'total': c.get('total'), 'items_per_s': _finite(c.get('items_per_s'))}
    if state.train:
        p = state.train
        out['phase'] = p.get('phase') or 'train'        # train, or another job's phase (caption, infer)
        for name in PROGRESS_FIELDS:
            out[name] = _finite(p.get(name)) if name.endswith('_s') else p.get(name)
        if out['eta_s'] is not None and _finite(p.get('time')) is not None:
            out['eta_s'] = max(0.0, round(out['eta_s'] - max(0.0, now - p['time']), 1))
        if isinstance(p.get('step'), int) and isinstance(p.get('total_steps'), int) and p['total_steps'] > 0:
            out['fraction'] = round(min(1.0, p['step'] / p['total_steps']), 4)
    return out


RESOURCE_FIELDS = ('node', 'host', 'rank', 'local_rank', 'stage', 'dp_rank', 'device', 'kind', 'util_pct',
                   'mem_used_mib', 'mem_total_mib', 'mem_peak_mib')


def resources_view(state: EventState, now):
    """Each rank's newest device use (the trainer's `resources` events), by node then rank, with its age."""
    rows = [{**{k: ev.get(k) for k in RESOURCE_FIELDS}, 'age_s': _age(now, _finite(ev.get('time')))}
            for ev in state.resources.values()]
    return sorted(rows, key=lambda r: (r['node'] if isinstance(r['node'], int) else -1, r['rank']))


def _latest(series):
    """{step, value} of a series' newest finite point (the task list's "latest loss"), or None."""
    for step, value in zip(reversed(series.steps), reversed(series.values)) if series else ():
        if value is not None:
            return {'step': step, 'value': value}
    return None


def _age(now, t):
    return None if t is None else round(max(0.0, now - t), 2)
