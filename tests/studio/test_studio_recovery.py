"""Restarting the studio: jobs still running are re-attached and finish; jobs that died meanwhile are
marked interrupted and resumed from their checkpoint; a pid now owned by another program is neither
adopted nor signalled. Runs real `python -m api` processes and kills them with SIGKILL."""

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from tests.support.studio import StudioProcess, free_port, kill_jobs, train_form, wait_until, write_dataset


@pytest.fixture
def studio_proc(data_root, tiny_model):
    procs = []

    def make(**settings):
        p = StudioProcess(data_root, free_port(), **settings)
        procs.append(p)
        return p
    yield make
    for p in procs:
        p.kill()
    kill_jobs(data_root)


def start_job(s, model, epochs=15):
    status, task = s.call('POST', '/tasks', {'form': train_form(model, 'demo', epochs=epochs)})
    assert status == 201, task
    status, job = s.call('POST', f'/tasks/{task["id"]}/start', {})
    assert status == 202, job
    return job['id']


def step_of(s, job):
    return s.call('GET', f'/jobs/{job}/progress')[1]['step'] or 0


def dead(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_restart_reattaches_to_a_running_job(studio_proc, data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.1})
    s = studio_proc().start()
    job = start_job(s, tiny_model)
    wait_until(lambda: step_of(s, job) >= 2, 20, what='training to start')
    pid = s.call('GET', f'/jobs/{job}')[1]['attempts'][-1]['pid']
    s.kill()
    assert not dead(pid)                                  # the job outlives the studio
    s.start()
    rec = s.call('GET', f'/jobs/{job}')[1]
    assert rec['state'] == 'running' and len(rec['attempts']) == 1 and rec['attempts'][0]['pid'] == pid
    rec = wait_until(lambda: (r := s.call('GET', f'/jobs/{job}')[1])['state'] not in ('running',) and r, 30,
                     what='the re-attached job to finish')
    assert rec['state'] == 'done' and len(rec['attempts']) == 1 and rec['attempts'][0]['outcome'] == 'done'
    assert s.call('GET', f'/jobs/{job}/progress')[1]['step'] == 30


def test_job_that_died_while_the_studio_was_down_is_resumed(studio_proc, data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.1})
    s = studio_proc().start()
    job = start_job(s, tiny_model)
    wait_until(lambda: step_of(s, job) >= 5, 20, what='a checkpoint or two')
    pid = s.call('GET', f'/jobs/{job}')[1]['attempts'][-1]['pid']
    s.kill()
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: dead(pid), 10, what='the trainer to die')
    s.start()
    rec = s.call('GET', f'/jobs/{job}')[1]
    first = rec['attempts'][0]
    assert first['outcome'] == 'interrupted' and 'gone when the studio started' in first['reason']
    rec = wait_until(lambda: (r := s.call('GET', f'/jobs/{job}')[1])['state'] in ('done', 'failed') and r, 30,
                     what='the resumed job to finish')
    assert rec['state'] == 'done' and len(rec['attempts']) == 2
    assert rec['attempts'][1]['resume_from'].split('/checkpoints/')[1].startswith('step')


def test_a_reused_pid_is_not_adopted_nor_signalled(make_app, data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.1})
    app = make_app()
    studio, c = app.extensions['odeo'], app.test_client()
    task = c.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo', epochs=50)}).get_json()['id']
    job = c.post(f'/api/v1/tasks/{task}/start', json={}).get_json()['id']
    wait_until(lambda: (studio.monitor.progress(studio.jobs.get(job))['step'] or 0) >= 2, 10, studio.scheduler.tick,
               what='training')
    att = studio.jobs.get(job)['attempts'][-1]
    os.killpg(att['pid'], signal.SIGKILL)
    wait_until(lambda: dead(att['pid']), 10, what='the trainer to die')
    # The kernel gives the pid to another program (here: a sleep in its own session); the record remains.
    stranger = subprocess.Popen(['sleep', '60'], start_new_session=True)
    try:
        path = data_root / studio.jobs.get(job)['run_dir'] / 'job.json'
        rec = json.loads(path.read_text())
        rec['attempts'][-1]['pid'] = stranger.pid
        path.write_text(json.dumps(rec))
        again = make_app().extensions['odeo']                      # a studio starting on this data root
        rec = again.jobs.get(job)
        assert rec['attempts'][0]['outcome'] == 'interrupted' and rec['state'] == 'queued', rec
        time.sleep(0.2)
        assert stranger.poll() is None                            # untouched
    finally:
        stranger.kill()
        stranger.wait()
