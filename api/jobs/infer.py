"""The `infer` job: `python -m api.jobs.infer --run_dir <run>` makes the preview videos of one test run.

Reads <run>/job.json (its `infer` key, written by api/services/inference/service.py), then for every cell of the
grid (LoRA row x input x strength, plus the base model's row when asked) makes one video with the chosen
backend (registry BACKENDS: 'embedded' = diffusers in this process, 'comfyui' = a ComfyUI server) and
writes into the run directory:

    results/c000.mp4     H.264 video (yuv420p, plays in browsers)
    results/c000.jpg     its first frame (poster)
    results.json         the manifest: every cell with its settings and status, rewritten atomically

Events (docs/architecture.md): status starting / loading / generating / done | stopped | failed;
progress (phase 'infer': step and total_steps count denoising steps over the whole run, plus cell and
cells); one artifact `video` and one `image` per finished cell carrying the cell's settings; heartbeats.
control/stop or SIGTERM stops at the next denoising step (exit 0, status stopped). The first error ends
the run (exit 1) with a message naming the cell; cells already made stay.
"""

import argparse
import importlib
import json
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from api.jobs.control import Control, JobError, Stopped
from utils.events import EventWriter
from utils.fsutil import atomic_save, atomic_write_bytes, atomic_write_json

BACKENDS = {                     # name -> 'module:class'; imported only when used (torch only for embedded)
    'embedded': 'api.jobs.infer_embedded:EmbeddedBackend',
    'comfyui': 'api.jobs.infer_comfyui:ComfyBackend',
}
PROGRESS_EVERY_S = 0.5           # at most this often a progress event while denoising
PREVIEW_DIR = 'previews'         # live previews while denoising: the newest one per cell


def lora_label(row):
    if row is None:
        return 'base model'
    return f'epoch {row["epoch"]}' if row.get('epoch') is not None and row['name'].startswith('epoch') else row['name']


def plan(spec):
    """Cells in the order they are made: the base model first, then LoRA by LoRA (each loaded once)."""
    cells = []
    for row in spec['loras']:
        strengths = [None] if row is None else spec['strengths']
        for ii, inp in enumerate(spec['inputs']):
            for strength in strengths:
                n = len(cells)
                lora = None if row is None else {k: row[k] for k in ('id', 'job_id', 'task_id', 'name', 'epoch', 'step')}
                if lora:
                    lora['label'] = lora_label(row)
                cells.append({
                    'id': f'c{n:03d}', 'index': n, 'status': 'pending', 'lora': lora, 'strength': strength,
                    'input': ii, 'prompt': inp['prompt'], 'image': inp['image'], 'width': inp['width'],
                    'height': inp['height'], 'frames': spec['frames'], 'fps': spec['fps'], 'seed': spec['seed'],
                    'steps': spec['steps'], 'guidance': spec['guidance'], 'guidance_low': spec.get('guidance_low'),
                    'shift': spec['shift'], 'negative_prompt': spec['negative_prompt'],
                    'video': None, 'video_fast': None, 'poster': None, 'preview': None, 'preview_step': None,
                    'seconds': None, 'error': None})
    return cells


class Manifest:
    def __init__(self, run_dir, job, spec, cells, path=None):
        self.path = Path(path) if path else Path(run_dir) / 'results.json'
        settings = {k: spec.get(k) for k in ('seed', 'steps', 'guidance', 'guidance_low', 'shift', 'frames', 'fps',
                                             'width', 'height', 'area', 'strengths', 'negative_prompt')}
        self.doc = {'version': 1, 'job_id': job['id'], 'task_id': job['task_id'], 'backend': spec['backend'],
                    'variant': spec['variant'], 'model': spec['model'].get('ckpt_path'), 'settings': settings,
                    'created_at': time.time(), 'updated_at': None, 'cells': cells}
        self.write()

    def write(self):
        self.doc['updated_at'] = time.time()
        atomic_write_json(self.path, self.doc, durable=False)

    def finish(self, cell, **changes):
        cell.update(changes)
        self.write()


class Runner:
    """Makes `cells` (default: every cell of the plan) into <run_dir>/results/, listing them in `manifest`
    (default <run_dir>/results.json)."""

    def __init__(self, run_dir, job, events, control, cells=None, manifest=None):
        self.run_dir = Path(run_dir)
        self.job = job
        self.spec = job['infer']
        self.events = events
        self.control = control
        self.cells = plan(self.spec) if cells is None else cells
        self.position = {c['id']: i for i, c in enumerate(self.cells)}
        self.manifest = Manifest(run_dir, job, self.spec, self.cells, manifest)
        self.total_steps = len(self.cells) * self.spec['steps']
        self.started = None
        self._last = 0.0

    def progress(self, cell, step, force=False):
        self.control.check()
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        done = self.position[cell['id']] * self.spec['steps'] + step
        rate = done / (now - self.started) if done and now > self.started else None
        eta = (self.total_steps - done) / rate if rate else None
        self.events.progress(phase='infer', step=done, total_steps=self.total_steps, cell=cell['index'] + 1,
                             cells=len(self.cells), cell_step=step, steps=self.spec['steps'],
                             steps_per_s=round(rate, 3) if rate else None, eta_s=round(eta, 1) if eta else None)

    def run(self, backend):
        self.events.status('loading', f'{self.spec["backend"]}: loading {self.spec["variant"]}')
        backend.open()
        self.events.status('generating', f'{len(self.cells)} video(s)')
        self.started = time.monotonic()
        for cell in self.cells:
            self.control.check()
            self.make(backend, cell)
        return len(self.cells)

    def make(self, backend, cell):
        rel_video, rel_poster = f'results/{cell["id"]}.mp4', f'results/{cell["id"]}.jpg'
        self.manifest.finish(cell, status='running')
        t0 = time.monotonic()
        try:
            poster = backend.generate(cell, self.run_dir / rel_video, lambda i, n: self.progress(cell, i),
                                      lambda step, data, ext, ms: self.preview(cell, step, data, ext, ms),
                                      lambda frames: self.fast_video(cell, frames))
        except Stopped:
            self.manifest.finish(cell, status='pending')
            raise
        except Exception as e:
            self.manifest.finish(cell, status='failed', error=str(e) or type(e).__name__)
            raise
        save_poster(poster, self.run_dir / rel_poster)
        self.manifest.finish(cell, status='done', video=rel_video, poster=rel_poster,
                             seconds=round(time.monotonic() - t0, 2))
        cell_artifacts(self.events, cell)
        self.progress(cell, self.spec['steps'], force=True)

    def preview(self, cell, step, data, ext, ms=None):
        """The newest live preview of a running cell: previews/<cell>_s<step>.<ext> (the one before it is
        removed), named in results.json and announced by a `preview` event."""
        rel = f'{PREVIEW_DIR}/{cell["id"]}_s{step:03d}.{ext}'
        atomic_write_bytes(self.run_dir / rel, data, durable=False)
        old = cell.get('preview')
        if old and old != rel:
            (self.run_dir / old).unlink(missing_ok=True)
        self.manifest.finish(cell, preview=rel, preview_step=step)
        self.events.emit('preview', cell=cell['id'], step=step, path=rel, ms=None if ms is None else round(ms, 1))

    def fast_video(self, cell, frames):
        """results/<cell>_fast.mp4: the final latents decoded by the preview TAEHV, there (and named in the
        cell's `video_fast`) while the full VAE still decodes the same latents into results/<cell>.mp4."""
        from utils.media import write_video
        rel = f'results/{cell["id"]}_fast.mp4'
        write_video(self.run_dir / rel, frames, cell['fps'])
        self.manifest.finish(cell, video_fast=rel)

    def skip_rest(self):
        for cell in self.cells:
            if cell['status'] in ('pending', 'running'):
                cell['status'] = 'skipped'
        self.manifest.write()


def cell_artifacts(events, cell):
    """The `video` and `image` artifact events of a finished cell, carrying its settings."""
    fields = {k: cell[k] for k in ('strength', 'seed', 'prompt', 'image', 'width', 'height', 'frames', 'fps')}
    lora = cell['lora'] or {}
    meta = dict(cell=cell['id'], lora=lora.get('label', 'base model'), lora_id=lora.get('id'),
                run=lora.get('job_id'), **fields)
    events.artifact('video', cell['video'], epoch=lora.get('epoch'), step=lora.get('step'), poster=cell['poster'], **meta)
    events.artifact('image', cell['poster'], epoch=lora.get('epoch'), step=lora.get('step'), **meta)


def save_poster(frame, path):
    from PIL import Image
    atomic_save(path, lambda tmp: Image.fromarray(frame).save(tmp, format='JPEG', quality=90), durable=False)


def backend_for(spec, run_dir, control):
    name = spec.get('backend', 'embedded')
    if name not in BACKENDS:
        raise JobError(f'unknown backend {name!r} (known: {", ".join(BACKENDS)})')
    module, cls = BACKENDS[name].split(':')
    return getattr(importlib.import_module(module), cls)(spec, Path(run_dir), control)


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m api.jobs.infer')
    p.add_argument('--run_dir', required=True)
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    job = json.loads((run_dir / 'job.json').read_text(encoding='utf-8'))
    return render(run_dir, job, run_dir, f'infer job {job["id"]}')


def render(run_dir, job, state_dir, what, cells=None):
    """Make the cells (default: all) of the job in run_dir; events, control files and, when cells are given, the
    manifest live in state_dir (an eval job's worker has its own). Returns the exit code."""
    state_dir = Path(state_dir)
    events = EventWriter(state_dir)
    events.start_heartbeat()
    control = Control(state_dir, alive=events.progress_made)
    if threading.current_thread() is threading.main_thread():      # (tests run the job in a thread)
        signal.signal(signal.SIGTERM, control.on_signal)
    events.status('starting', what)
    runner = backend = None
    try:
        runner = Runner(run_dir, job, events, control, cells, state_dir / 'results.json' if cells is not None else None)
        backend = backend_for(job['infer'], run_dir, control)
        n = runner.run(backend)
        events.status('done', f'{n} video(s)')
        return 0
    except Stopped:
        runner and runner.skip_rest()
        events.status('stopped', 'stopped on request')
        return 0
    except Exception as e:
        cell = next((c for c in (runner.cells if runner else []) if c['status'] == 'failed'), None)
        where = f'video {cell["index"] + 1} ({cell["lora"]["label"] if cell["lora"] else "base model"}): ' if cell else ''
        known = isinstance(e, JobError)
        message = f'{where}{e}' if known else f'{where}{type(e).__name__}: {e}'
        if not known:
            traceback.print_exc()
        print(f'infer failed: {message}', file=sys.stderr)
        runner and runner.skip_rest()
        events.status('failed', message)
        return 1
    finally:
        if backend is not None:
            backend.close()
        events.close()


if __name__ == '__main__':
    sys.exit(main())
