"""A data root that fills up or turns read-only, as a real filesystem (a small tmpfs mounted over runs/,
which needs root): writes answer 507 / 503 naming the path and the reason, /health says so, the
scheduler backs off, and a job whose trainer died meanwhile is recorded with its exit code (in memory at
once, on disk as soon as the disk takes it again)."""

import errno
import json
import os
import subprocess

import pytest

from tests.support.studio import train_form, wait_until, write_dataset


@pytest.fixture
def small_runs(data_root):
    if os.geteuid() != 0:
        pytest.skip('mounting a small tmpfs needs root')
    runs = data_root / 'runs'
    runs.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(runs)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here: {r.stderr.strip()}')
    yield runs
    subprocess.run(['umount', '-l', str(runs)], check=False)


def _tick(studio):
    try:
        studio.scheduler.tick()
    except OSError:
        pass


def _fill(folder):
    with open(folder / 'filler', 'wb') as f:
        try:
            while True:
                f.write(b'\0' * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_full_then_read_only_data_root(make_app, data_root, tiny_model, small_runs):
    app = make_app(retry_limit=0)
    c, studio = app.test_client(), app.extensions['odeo']
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.05})
    task = c.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo', epochs=500)}).get_json()
    job = c.post(f'/api/v1/tasks/{task["id"]}/start', json={}).get_json()['id']
    wait_until(lambda: (studio.monitor.progress(studio.jobs.get(job))['step'] or 0) >= 2, 30, lambda: _tick(studio),
               what='training to start')
    assert c.get('/api/v1/health').get_json()['ok'] is True

    _fill(small_runs)                                   # the trainer's next write fails: it dies
    rec = wait_until(lambda: studio.jobs.get(job)['state'] != 'running' and studio.jobs.get(job), 30,
                     lambda: _tick(studio), what='the dead job to be settled')
    assert rec['state'] == 'failed' and rec['attempts'][-1]['exit_code'] == 1       # true in memory ...
    assert json.loads((small_runs / task['id'] / job / 'job.json').read_text())['state'] == 'running'  # ... not on disk yet
    assert studio.scheduler.fault and studio.scheduler.fault['errno'] == errno.ENOSPC
    view = c.get(f'/api/v1/jobs/{job}').get_json()
    assert view['state'] == 'failed' and view['attempts'][-1]['exit_code'] == 1

    r = c.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo')})
    err = r.get_json()['error']
    assert r.status_code == 507 and err['code'] == 'insufficient_storage'
    assert str(small_runs) in err['message'] and 'No space left on device' in err['message']
    health = c.get('/api/v1/health').get_json()
    assert health['ok'] is False and health['storage']['errno'] == 'ENOSPC'
    assert str(small_runs) in health['storage']['path']

    (small_runs / 'filler').unlink()                    # space again: the record reaches the disk
    _tick(studio)
    assert studio.scheduler.fault is None
    on_disk = json.loads((small_runs / task['id'] / job / 'job.json').read_text())
    assert on_disk['state'] == 'failed' and on_disk['attempts'][-1]['exit_code'] == 1
    wait_until(lambda: c.get('/api/v1/health').get_json()['ok'], 10, what='/health to be ok again')

    subprocess.run(['mount', '-o', 'remount,ro', str(small_runs)], check=True)
    r = c.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo')})
    assert r.status_code == 503 and r.get_json()['error']['code'] == 'read_only' and r.headers['Retry-After']
    assert 'Read-only file system' in r.get_json()['error']['message']
    health = wait_until(lambda: (h := c.get('/api/v1/health').get_json())['storage'] and h, 10, what='/health to see it')
    assert health['ok'] is False and health['storage']['errno'] == 'EROFS'
