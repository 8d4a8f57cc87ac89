"""The `eval` job (batch evaluation): `python -m api.jobs.evaluate --run_dir <run> --devices 0,1 --mode gpu|cpu`.

The same grid as an infer job (job.json's `infer` key: LoRA rows x inputs x strengths; for a batch the inputs
are the rows of a prompt list or an image,prompt CSV), made by one worker process per device it was given:

    parent   spawns `python -m api.jobs.evaluate --run_dir <run> --worker k --workers W` for k < W (W = devices, at
             most one per cell), each seeing only its device (CUDA_VISIBLE_DEVICES=<id>; on the CPU an empty one
             and OMP_NUM_THREADS=1: one CPU slot each); gathers what they made into <run>/results.json (the infer
             manifest, each cell with the `worker` that made it), writes the job's events (status, progress over
             all cells, one `video` and one `image` artifact per finished cell, heartbeats), forwards a stop.
    worker k makes the cells whose index % W == k (in plan order, so each LoRA loads once per worker) into
             <run>/results/, with its own manifest, events, control folder and log under <run>/workers/w<k>/.

A worker that fails ends the job (the others are stopped): status failed naming the worker and its message,
exit 1. control/stop or SIGTERM: every worker stops at its next denoising step, exit 0, status stopped.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from api.jobs.control import Control
from api.jobs.infer import Manifest, cell_artifacts, plan, render
from utils.events import EventWriter

POLL_S = 0.5
STOP_GRACE_S = 30.0


def worker_dir(run_dir, k):
    return Path(run_dir) / 'workers' / f'w{k}'


def worker_cells(spec, k, workers):
    return [c for c in plan(spec) if c['index'] % workers == k]


def read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None


def last_status(folder):
    """The newest status event a worker wrote (None before its first)."""
    try:
        lines = (Path(folder) / 'events.jsonl').read_text(encoding='utf-8').splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get('type') == 'status':
            return ev
    return None


class Gatherer:
    """The parent: starts the workers, merges their manifests into results.json, reports progress."""

    def __init__(self, run_dir, job, devices, mode, events, control):
        self.run_dir = Path(run_dir)
        self.job = job
        self.spec = job['infer']
        self.cells = plan(self.spec)
        self.workers = max(1, min(len(devices), len(self.cells)))
        self.devices = devices[:self.workers]
        self.mode = mode
        self.events = events
        self.control = control
        self.manifest = Manifest(run_dir, job, self.spec, self.cells)
        self.manifest.doc['workers'] = self.workers
        self.reported = set()
        self.procs = []

    def start(self):
        base = dict(os.environ)
        for k, device in enumerate(self.devices):
            folder = worker_dir(self.run_dir, k)
            (folder / 'control').mkdir(parents=True, exist_ok=True)
            env = dict(base)
            if self.mode == 'gpu':
                env['CUDA_VISIBLE_DEVICES'] = str(device)
            else:
                env.update(CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
            with open(folder / 'log.txt', 'ab') as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, '-m', 'api.jobs.evaluate', '--run_dir', str(self.run_dir), '--worker', str(k),
                     '--workers', str(self.workers)], env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
        where = 'GPU' if self.mode == 'gpu' else 'CPU slot'
        self.events.status('generating', f'{len(self.cells)} video(s) on {self.workers} worker(s) '
                                         f'({where} {", ".join(str(d) for d in self.devices)})')

    def gather(self):
        """Take in every worker's manifest; an artifact per newly finished cell. Returns the cells done."""
        by_id = {c['id']: c for c in self.cells}
        for k in range(self.workers):
            doc = read_json(worker_dir(self.run_dir, k) / 'results.json') or {}
            for c in doc.get('cells', []):
                mine = by_id.get(c.get('id'))
                if mine is None or c['index'] % self.workers != k:
                    continue
                mine.update(c, worker=k)
                if c.get('status') == 'done' and c['id'] not in self.reported:
                    self.reported.add(c['id'])
                    cell_artifacts(self.events, mine)
        self.manifest.write()
        done = sum(1 for c in self.cells if c['status'] == 'done')
        steps = self.spec['steps']
        self.events.progress(phase='infer', step=done * steps, total_steps=len(self.cells) * steps, cell=done,
                             cells=len(self.cells), workers=self.workers,
                             running=sum(1 for p in self.procs if p.poll() is None))
        return done

    def stop_workers(self, sig=signal.SIGTERM):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except OSError:
                    pass

    def wait(self):
        """Until every worker ended; returns (stopped, failures [(worker, message)])."""
        stopped, stop_at = False, None
        while True:
            if not stopped and self.control.stop_requested():
                stopped, stop_at = True, time.monotonic()
                self.stop_workers()
            if stop_at and time.monotonic() - stop_at > STOP_GRACE_S:
                self.stop_workers(signal.SIGKILL)
            codes = [p.poll() for p in self.procs]
            failures = [(k, self.failure(k)) for k, c in enumerate(codes) if c not in (None, 0)]
            if failures and not stopped:
                stopped, stop_at = True, time.monotonic()
                self.stop_workers()
            self.gather()
            if all(c is not None for c in codes):
                return stopped and not failures, failures
            time.sleep(POLL_S)

    def failure(self, k):
        ev = last_status(worker_dir(self.run_dir, k)) or {}
        return ev.get('message') if ev.get('state') == 'failed' else f'exited with code {self.procs[k].returncode}'

    def finish(self, stopped, failures):
        for c in self.cells:
            if c['status'] in ('pending', 'running'):
                c['status'] = 'skipped'
        self.manifest.write()
        done = sum(1 for c in self.cells if c['status'] == 'done')
        if failures:
            k, message = failures[0]
            self.events.status('failed', f'worker {k}: {message}')
            print(f'eval failed: worker {k}: {message} (its log: workers/w{k}/log.txt)', file=sys.stderr)
            return 1
        if stopped:
            self.events.status('stopped', 'stopped on request')
            return 0
        self.events.status('done', f'{done} video(s) on {self.workers} worker(s)')
        return 0


def parent(run_dir, devices, mode):
    job = json.loads((run_dir / 'job.json').read_text(encoding='utf-8'))
    events = EventWriter(run_dir)
    events.start_heartbeat()
    control = Control(run_dir, alive=events.progress_made)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, control.on_signal)
    events.status('starting', f'eval job {job["id"]}')
    g = None
    try:
        g = Gatherer(run_dir, job, devices, mode, events, control)
        g.start()
        return g.finish(*g.wait())
    except Exception as e:
        if g is not None:
            g.stop_workers(signal.SIGKILL)
        events.status('failed', f'{type(e).__name__}: {e}')
        raise
    finally:
        events.close()


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m api.jobs.evaluate')
    p.add_argument('--run_dir', required=True)
    p.add_argument('--devices', default='0', help='the devices to spread over (GPU ids, or CPU slot numbers)')
    p.add_argument('--mode', default='cpu', choices=('cpu', 'gpu'))
    p.add_argument('--worker', type=int, default=None, help='(internal) run as worker k of --workers')
    p.add_argument('--workers', type=int, default=1)
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    if args.worker is None:
        return parent(run_dir, [d for d in args.devices.split(',') if d != ''] or ['0'], args.mode)
    job = json.loads((run_dir / 'job.json').read_text(encoding='utf-8'))
    cells = worker_cells(job['infer'], args.worker, args.workers)
    return render(run_dir, job, worker_dir(run_dir, args.worker), f'eval job {job["id"]} worker {args.worker}', cells)


if __name__ == '__main__':
    sys.exit(main())
