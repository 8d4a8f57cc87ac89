"""Helpers for studio tests: a tiny model folder, datasets, tasks configured for the fake trainer,
and waiting on the scheduler without sleeping longer than needed."""

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from flask.testing import FlaskClient

from api.services.jobs.ports import free_port  # noqa: F401  (tests and bench pick ports with it)

REPO = Path(__file__).resolve().parents[2]
FAKE_TRAINER = str(REPO / 'tests' / 'fakes' / 'fake_trainer.py')

# Settings every studio under test gets: the fake trainer without a launcher, quick ticks and timeouts.
TEST_SETTINGS = {
    'launcher': 'python',
    'trainer_script': FAKE_TRAINER,
    'gpu_backend': 'cpu',
    'cpu_slots': 2,
    'scheduler_interval_s': 0.1,
    'heartbeat_timeout_s': 30.0,
    'retry_limit': 3,
    'stop_grace_s': 5.0,
    'kill_grace_s': 2.0,
    'gpu_cache_s': 0.0,
    'backup_interval_h': 0,
}


class StudioClient(FlaskClient):
    """The Flask test client of studio tests: sends X-Requested-With on every request, as the UI does (the
    studio refuses a state change with neither that header nor a JSON body)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.environ_base['HTTP_X_REQUESTED_WITH'] = 'odeo'


def copy_tiny_model(tiny_models, dest: Path, variant='wan2.1-t2v-1.3b', layout='official'):
    """A copy of one of the session's tiny random-weight models (tests' `tiny_models`) at `dest`."""
    import shutil
    shutil.copytree(Path(tiny_models) / variant / layout, dest)
    return dest


def write_dataset(folder: Path, items=2, behave=None):
    """`items` small PNG images with captions, and the fake trainer's behaviour file."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(items):
        Image.new('RGB', (32, 32), (i * 40 % 255, 80, 120)).save(folder / f'img{i}.png')
        (folder / f'img{i}.txt').write_text(f'a test image number {i}')
    if behave:
        import tomli_w
        (folder / 'fake_trainer.toml').write_text(tomli_w.dumps(behave))
    return folder


def train_form(model, dataset, epochs=3, **extra):
    form = {'model_path': str(model), 'dataset': dataset, 'epochs': epochs, 'optimizer': 'adamw',
            'learning_rate': 1e-4, 'save_every_n_epochs': 1, 'checkpoint_every_n_epochs': 1,
            'checkpoint_every_n_minutes': None, 'resolutions': [256], 'frame_buckets': [1], 'gpus': 1}
    form.update(extra)
    return form


def wait_until(cond, timeout=30.0, tick=None, every=0.05, what='condition'):
    """Poll `cond` (calling `tick` first, e.g. a scheduler tick) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        if tick:
            tick()
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout}s waiting for {what}')
        time.sleep(every)


# ---- a real `python -m api` process ----------------------------------------------------------------

def studio_env(data_root, port, **settings):
    env = dict(os.environ)
    for k, v in {**TEST_SETTINGS, 'data_root': str(data_root), 'port': port, **settings}.items():
        env[f'ODEO_{k.upper()}'] = str(v)
    env.pop('ODEO_SETTINGS', None)
    return env


class StudioProcess:
    ready_path = '/health'          # answers 200 once the studio serves

    def __init__(self, data_root, port, **settings):
        self.data_root, self.port, self.settings = data_root, port, settings
        self.proc = None
        self.base = f'http://127.0.0.1:{port}/api/v1'

    def start(self, timeout=20.0):
        log = open(Path(self.data_root).parent / f'studio-{self.port}.log', 'ab')
        self.proc = subprocess.Popen([sys.executable, '-m', 'api'], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                     env=studio_env(self.data_root, self.port, **self.settings))
        wait_until(self.ready, timeout, what='the studio to answer')
        return self

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f'studio exited with {self.proc.returncode}')
        try:
            return self.call('GET', self.ready_path)[0] == 200
        except OSError:
            return False

    def call(self, method, path, body=None, timeout=10.0):
        data = None if body is None else json.dumps(body).encode()
        headers = {'Content-Type': 'application/json'}
        if self.settings.get('token'):
            headers['Authorization'] = f'Bearer {self.settings["token"]}'
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b'null')
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b'null')

    def raw(self, method, path, body=None, headers=None, timeout=10.0):
        """One request with exactly these headers (no Host unless given; `path` from the root, e.g. '/api/v1/tasks'):
        (status, headers, body)."""
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader('Content-Length', str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return r.status, r.headers, r.read()
        finally:
            conn.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


def kill_jobs(data_root):
    """End every process a test's jobs left behind (their records name pid and start time)."""
    import signal

    from api.services.jobs.procs import signal_job
    for rec in Path(data_root).glob('runs/*/*/job.json'):
        try:
            job = json.loads(rec.read_text())
        except ValueError:
            continue
        for att in job.get('attempts', []):
            signal_job(att.get('pid'), att.get('create_time'), signal.SIGKILL)
