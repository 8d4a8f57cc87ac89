"""The job queue with real trainer processes (the fake trainer, on the CPU): GPU-aware queueing, ports,
stop sequence, automatic resume after crashes and hangs, retry limit, queue order, resume / restart /
continue. The scheduler thread is off; each test ticks it and waits only as long as needed."""

import json
import os
import socket
from pathlib import Path

import psutil
import pytest

from tests.fakes.gpus import FakeGpus
from tests.support.studio import train_form, wait_until, write_dataset

SLOW = {'step_time': 0.1}          # a job that runs until told otherwise (with epochs=100)


class Harness:
    """A studio app plus shortcuts to make tasks for the fake trainer and drive the scheduler."""

    def __init__(self, app, data_root, model):
        self.app, self.client = app, app.test_client()
        self.studio = app.extensions['odeo']
        self.data_root, self.model = data_root, model
        self.n = 0

    def task(self, behave=None, epochs=3, items=2, **form):
        self.n += 1
        name = f'ds{self.n}'
        write_dataset(self.data_root / 'datasets' / name, items=items, behave={'step_time': 0.02, **(behave or {})})
        r = self.client.post('/api/v1/tasks', json={'form': train_form(self.model, name, epochs=epochs, **form)})
        assert r.status_code == 201, r.get_json()
        return r.get_json()['id']

    def start(self, task_id, **body):
        r = self.client.post(f'/api/v1/tasks/{task_id}/start', json=body)
        assert r.status_code == 202, r.get_json()
        return r.get_json()['id']

    def job(self, job_id):
        return self.studio.jobs.get(job_id)

    def tick(self):
        self.studio.scheduler.tick()

    def wait_state(self, job_id, *states, timeout=30):
        try:
            return wait_until(lambda: self.job(job_id)['state'] in states and self.job(job_id), timeout, self.tick,
                              what=f'job {job_id} to be {"/".join(states)}')
        except AssertionError as e:
            raise AssertionError(f'{e}: {self.job(job_id)}; queue {self.studio.queue_view()}') from None

    def wait_step(self, job_id, step, timeout=30):
        return wait_until(lambda: (self.studio.monitor.progress(self.job(job_id))['step'] or 0) >= step, timeout,
                          self.tick, what=f'job {job_id} to reach step {step}')

    def run_dir(self, job_id):
        return self.data_root / self.job(job_id)['run_dir']

    def statuses(self, job_id):
        lines = (self.run_dir(job_id) / 'events.jsonl').read_text().splitlines()
        return [e['state'] for e in map(json.loads, lines) if e['type'] == 'status']


@pytest.fixture
def harness(make_app, data_root, tiny_model):
    def make(**settings):
        return Harness(make_app(**settings), data_root, tiny_model)
    return make


# ---- queueing on GPUs ------------------------------------------------------------------------------

def test_jobs_queue_when_gpus_are_short(harness):
    h = harness(gpus=FakeGpus(2))
    a, b, c = (h.start(h.task(behave=SLOW if i == 0 else None, epochs=100 if i == 0 else 2), gpus=n)
               for i, n in enumerate((1, 2, 2)))
    h.wait_state(a, 'running')
    h.tick()
    assert h.job(a)['attempts'][-1]['devices'] == [0]
    assert h.job(b)['state'] == 'queued' and h.job(c)['state'] == 'queued'
    queue = h.client.get('/api/v1/queue').get_json()
    assert [e['job_id'] for e in queue['jobs']] == [b, c]
    assert queue['jobs'][0]['waiting_reason'] == 'waiting for 2 free GPUs; usable now: 1'
    assert 'strict queue order' in queue['jobs'][1]['waiting_reason']
    gpus = h.client.get('/api/v1/gpus').get_json()
    assert gpus['devices'][0]['held_by']['job_id'] == a and gpus['devices'][1]['free']

    h.client.post(f'/api/v1/jobs/{a}/stop')
    h.wait_state(b, 'running')
    assert h.job(b)['attempts'][-1]['devices'] == [0, 1]
    assert h.job(c)['state'] == 'queued'                  # both GPUs are B's now
    h.wait_state(b, 'done')
    h.wait_state(c, 'running', 'done')
    assert h.job(c)['attempts'][-1]['devices'] == [0, 1]
    h.wait_state(c, 'done')


def test_backfill_lets_a_smaller_job_overtake(harness):
    h = harness(gpus=FakeGpus(2), queue_policy='backfill')
    a = h.start(h.task(behave=SLOW, epochs=100), gpus=1)
    h.wait_state(a, 'running')
    big = h.start(h.task(), gpus=2)
    small = h.start(h.task(behave=SLOW, epochs=100), gpus=1)
    h.wait_state(small, 'running')
    assert h.job(small)['attempts'][-1]['devices'] == [1]
    assert h.job(big)['state'] == 'queued'


def test_gpu_memory_threshold_respects_other_processes(harness):
    gpus = FakeGpus(2)
    gpus.used[1] = 30.0                                   # someone else's process on GPU 1
    h = harness(gpus=gpus, gpu_memory_threshold_gib=2.0)
    job = h.start(h.task(), gpus=2)
    for _ in range(3):
        h.tick()
    assert h.job(job)['state'] == 'queued'
    panel = h.client.get('/api/v1/gpus').get_json()['devices']
    assert panel[1]['busy_outside'] and not panel[1]['free'] and panel[0]['free']
    gpus.used[1] = 0.5                                    # under the threshold: usable
    h.wait_state(job, 'running', 'done')
    assert h.job(job)['attempts'][-1]['devices'] == [0, 1]


def test_named_gpus_and_impossible_requests(harness):
    h = harness(gpus=FakeGpus(4))
    job = h.start(h.task(), gpu_ids=[2, 3])
    h.wait_state(job, 'running', 'done')
    assert h.job(job)['attempts'][-1]['devices'] == [2, 3]
    r = h.client.post(f'/api/v1/tasks/{h.task()}/start', json={'gpus': 5})
    assert r.status_code == 422 and r.get_json()['error']['field'] == 'gpus'
    r = h.client.post(f'/api/v1/tasks/{h.task()}/start', json={'gpu_ids': [7]})
    assert r.status_code == 422 and r.get_json()['error']['field'] == 'gpu_ids'


def test_two_live_jobs_never_share_a_port(harness):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        base = s.getsockname()[1]
    if base > 65000:
        base = 40000
    blocker = socket.socket()
    blocker.bind(('127.0.0.1', base))                    # taken by someone else: must be skipped
    blocker.listen()
    try:
        h = harness(gpus=FakeGpus(2), port_range=(base, base + 20))
        a = h.start(h.task(behave=SLOW, epochs=100), gpus=1)
        b = h.start(h.task(behave=SLOW, epochs=100), gpus=1)
        h.wait_state(a, 'running')
        h.wait_state(b, 'running')
        pa, pb = h.job(a)['attempts'][-1]['port'], h.job(b)['attempts'][-1]['port']
        assert pa != pb and base not in (pa, pb)
        assert base <= pa <= base + 20 and base <= pb <= base + 20
        envs = [_env_of(h.job(j)['attempts'][-1]['pid']) for j in (a, b)]
        assert [e.get('MASTER_PORT') for e in envs] == [str(pa), str(pb)]
        assert [e.get('CUDA_VISIBLE_DEVICES') for e in envs] == ['0', '1']
        assert all(e.get('PYTHONUNBUFFERED') == '1' for e in envs)
        assert psutil.Process(h.job(a)['attempts'][-1]['pid']).nice() == 10     # the studio stays responsive
    finally:
        blocker.close()


def _env_of(pid):
    raw = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
    return dict(kv.decode().split('=', 1) for kv in raw if b'=' in kv)


# ---- stop sequence ---------------------------------------------------------------------------------

def test_stop_through_control_file_checkpoints_and_resume_continues(harness):
    h = harness()
    job = h.start(h.task(behave=SLOW, epochs=100))
    h.wait_step(job, 3)
    r = h.client.post(f'/api/v1/jobs/{job}/stop', json={})
    assert r.status_code == 202 and r.get_json()['state'] == 'stopping'
    rec = h.wait_state(job, 'stopped')
    att = rec['attempts'][-1]
    assert att['outcome'] == 'stopped' and att['exit_code'] == 0 and rec['stop']['signal'] is None
    assert not (h.run_dir(job) / 'control' / 'stop').exists()          # consumed by the trainer
    ckpts = h.client.get(f'/api/v1/jobs/{job}/checkpoints').get_json()['checkpoints']
    stopped_at = ckpts[-1]['step']
    assert stopped_at >= 3 and h.statuses(job)[-1] == 'stopped'

    r = h.client.post(f'/api/v1/jobs/{job}/resume', json={})
    assert r.status_code == 202
    h.wait_state(job, 'running')
    att = h.job(job)['attempts'][-1]
    assert att['n'] == 2 and att['resume_from'].endswith(f'checkpoints/step{stopped_at}')
    assert att['command'][-2:] == ['--resume_from_checkpoint', att['resume_from']]
    h.client.post(f'/api/v1/jobs/{job}/stop')
    h.wait_state(job, 'stopped')


def test_stop_with_save_writes_the_lora(harness):
    h = harness()
    job = h.start(h.task(behave=SLOW, epochs=100))
    h.wait_step(job, 2)
    h.client.post(f'/api/v1/jobs/{job}/stop', json={'save': True})
    h.wait_state(job, 'stopped')
    loras = h.client.get(f'/api/v1/jobs/{job}/artifacts').get_json()['loras']
    step_saves = [l for l in loras if l['kind'] == 'step']
    assert step_saves, loras
    path = step_saves[-1]['files'][0]['path']
    r = h.client.get(f'/api/v1/jobs/{job}/files/{path}')
    assert r.status_code == 200 and r.data[:8] and len(r.data) == step_saves[-1]['files'][0]['size']


def test_stop_escalates_to_sigterm_then_sigkill(harness):
    h = harness(stop_grace_s=0.3, kill_grace_s=1.5)
    deaf = h.start(h.task(behave={**SLOW, 'ignore_control': True}, epochs=100))
    stubborn = h.start(h.task(behave={**SLOW, 'ignore_control': True, 'ignore_sigterm': True}, epochs=100))
    h.wait_step(deaf, 2)
    h.wait_step(stubborn, 2)
    pid = h.job(stubborn)['attempts'][-1]['pid']
    for j in (deaf, stubborn):
        h.client.post(f'/api/v1/jobs/{j}/stop')
    h.wait_state(deaf, 'stopped')
    h.wait_state(stubborn, 'stopped')
    assert h.job(deaf)['stop']['signal'] == 'SIGTERM'
    assert h.statuses(deaf)[-1] == 'stopped'                          # SIGTERM means stop: it checkpointed
    assert h.job(stubborn)['stop']['signal'] == 'SIGKILL'
    assert h.job(stubborn)['attempts'][-1]['exit_code'] == -9
    assert not os.path.exists(f'/proc/{pid}') or 'Z' in Path(f'/proc/{pid}/stat').read_text().split()[2]


# ---- recovery from crashes and hangs ---------------------------------------------------------------

def test_crash_resumes_from_newest_checkpoint(harness):
    h = harness()
    job = h.start(h.task(behave={'crash_at_step': 5}, epochs=4))      # 2 steps/epoch: checkpoints at 2, 4
    rec = h.wait_state(job, 'done', 'failed')
    assert rec['state'] == 'done', rec['message']
    first, second = rec['attempts']
    assert first['outcome'] == 'crashed' and 'fake crash at step 5' in first['reason']
    assert second['resume_from'].endswith('checkpoints/step4') and second['outcome'] == 'done'
    assert rec['retries'] == 1
    api = h.client.get(f'/api/v1/jobs/{job}').get_json()
    assert [a['outcome'] for a in api['attempts']] == ['crashed', 'done']
    loss = h.client.get(f'/api/v1/jobs/{job}/metrics?names=train/loss').get_json()['series']['train/loss']
    assert loss['steps'] == list(range(1, 9))
    assert 'from step 4' in h.client.get(f'/api/v1/jobs/{job}/log').get_json()['text']


def test_hung_job_is_killed_and_resumed(harness):
    h = harness(heartbeat_timeout_s=2.0)
    job = h.start(h.task(behave={'hang_at_step': 3, 'heartbeat_interval': 0.1}, epochs=3))
    rec = h.wait_state(job, 'done', 'failed')
    assert rec['state'] == 'done', rec['message']
    assert rec['attempts'][0]['outcome'] == 'hung' and rec['attempts'][0]['hung_at']
    assert rec['attempts'][1]['resume_from'].endswith('checkpoints/step2')


def test_retry_limit_gives_up(harness):
    h = harness(retry_limit=2)
    job = h.start(h.task(behave={'crash_at_step': 2, 'crash_times': 99}, epochs=2))
    rec = h.wait_state(job, 'failed')
    assert [a['outcome'] for a in rec['attempts']] == ['crashed'] * 3
    assert 'gave up after 2' in rec['message']


def test_exit_0_without_a_final_status_is_a_crash_not_done(harness):
    # what the deepspeed runner does when its launcher dies by a signal: it exits 0 mid-run
    h = harness(retry_limit=1)
    job = h.start(h.task(behave={'die_at_step': 3, 'die_code': 0}, epochs=4))
    rec = h.wait_state(job, 'failed')
    assert [a['outcome'] for a in rec['attempts']] == ['crashed'] * 2
    assert 'without a final status' in rec['attempts'][0]['reason'] and rec['attempts'][0]['exit_code'] == 0


def test_refused_config_is_not_retried(harness):
    h = harness()
    job = h.start(h.task(behave={'refuse': True}))
    rec = h.wait_state(job, 'failed')
    assert len(rec['attempts']) == 1 and rec['attempts'][0]['outcome'] == 'refused'
    assert 'refused by the fake trainer' in rec['message']


# ---- queue order -----------------------------------------------------------------------------------

def test_queue_reorder_and_cancel(harness):
    h = harness(gpus=FakeGpus(1))
    running = h.start(h.task(behave=SLOW, epochs=100))
    h.wait_state(running, 'running')
    b, c, d = (h.start(h.task()) for _ in range(3))
    order = lambda q: [e['job_id'] for e in q['jobs']]  # noqa: E731
    assert order(h.client.get('/api/v1/queue').get_json()) == [b, c, d]
    assert order(h.client.post(f'/api/v1/queue/{d}/move', json={'to': 0}).get_json()) == [d, b, c]
    assert order(h.client.post(f'/api/v1/queue/{d}/move', json={'where': 'down'}).get_json()) == [b, d, c]
    assert order(h.client.post(f'/api/v1/queue/{c}/move', json={'by': -5}).get_json()) == [c, b, d]
    r = h.client.post(f'/api/v1/jobs/{b}/cancel')
    assert r.status_code == 200 and r.get_json()['state'] == 'cancelled'
    assert order(h.client.get('/api/v1/queue').get_json()) == [c, d]
    assert h.client.post(f'/api/v1/jobs/{running}/cancel').status_code == 409
    assert h.client.post(f'/api/v1/queue/{running}/move', json={'to': 0}).status_code == 409
    assert h.client.post(f'/api/v1/queue/{c}/move', json={'where': 'sideways'}).status_code == 400
    h.studio.queue.load(h.studio.jobs.all(states=('queued',)))       # the order survives a reload
    assert h.studio.queue.order() == [c, d]
    h.client.post(f'/api/v1/jobs/{running}/stop')
    h.wait_state(c, 'running', 'done')
    assert h.job(d)['state'] == 'queued' or h.job(d)['attempts'][0]['started_at'] > h.job(c)['attempts'][0]['started_at']


# ---- restart from a checkpoint, continue a finished run -----------------------------------------------

def test_restart_from_a_chosen_checkpoint_and_continue_for_more_epochs(harness):
    h = harness()
    task = h.task(epochs=3)
    job = h.start(task)
    h.wait_state(job, 'done')
    tags = [c['tag'] for c in h.client.get(f'/api/v1/jobs/{job}/checkpoints').get_json()['checkpoints']]
    assert tags == ['step2', 'step4', 'step6']

    r = h.client.post(f'/api/v1/jobs/{job}/restart', json={'checkpoint': 'step2'})
    assert r.status_code == 202, r.get_json()
    again = r.get_json()
    assert again['origin'] == {'action': 'restart', 'job_id': job, 'checkpoint': 'step2'}
    rec = h.wait_state(again['id'], 'done')
    assert rec['attempts'][0]['resume_from'].endswith(f'{job}/checkpoints/step2')
    loss = h.client.get(f'/api/v1/jobs/{again["id"]}/metrics').get_json()['series']['train/loss']
    assert loss['steps'] == [3, 4, 5, 6]

    assert h.client.post(f'/api/v1/jobs/{job}/continue', json={'epochs': 3}).status_code == 422
    r = h.client.post(f'/api/v1/jobs/{job}/continue', json={'epochs': 5})
    assert r.status_code == 202, r.get_json()
    more = h.wait_state(r.get_json()['id'], 'done')
    assert more['attempts'][0]['resume_from'].endswith(f'{job}/checkpoints/step6')
    progress = h.client.get(f'/api/v1/jobs/{more["id"]}/progress').get_json()
    assert progress['step'] == 10 and progress['total_epochs'] == 5
    assert 'epochs = 5' in (h.run_dir(more['id']) / 'config.toml').read_text()
    tasks = h.client.get('/api/v1/tasks').get_json()['tasks']
    assert tasks[0]['latest_job']['id'] == more['id'] and tasks[0]['state'] == 'done'


def test_one_active_job_per_task(harness):
    h = harness()
    task = h.task(behave=SLOW, epochs=100)
    job = h.start(task)
    assert h.client.post(f'/api/v1/tasks/{task}/start', json={}).status_code == 409
    h.wait_state(job, 'running')
    assert h.client.post(f'/api/v1/jobs/{job}/resume').status_code == 409
    assert h.client.post(f'/api/v1/jobs/{job}/save').status_code == 202
    wait_until(lambda: any(l['kind'] == 'step' for l in h.studio.artifacts(h.job(job))['loras']), 20, h.tick,
               what='the LoRA saved on request')
    h.client.post(f'/api/v1/jobs/{job}/stop')
    h.wait_state(job, 'stopped')


def test_delete_running_task_stops_it_first(harness):
    h = harness()
    task = h.task(behave=SLOW, epochs=100)
    job = h.start(task)
    h.wait_state(job, 'running')
    pid = h.job(job)['attempts'][-1]['pid']
    assert h.client.delete(f'/api/v1/tasks/{task}').status_code == 400          # no confirm
    r = h.client.delete(f'/api/v1/tasks/{task}?confirm=true')
    assert r.status_code == 202 and r.get_json()['deleting']
    assert h.client.get(f'/api/v1/tasks/{task}').get_json()['state'] == 'deleting'
    wait_until(lambda: h.client.get(f'/api/v1/tasks/{task}').status_code == 404, 20, h.tick,
               what='the task to be deleted')
    assert not (h.data_root / 'runs' / task).exists()
    assert not os.path.exists(f'/proc/{pid}') or 'Z' in Path(f'/proc/{pid}/stat').read_text().split()[2]


def test_retries_count_failures_in_a_row_without_progress(harness):
    # four unrelated crashes with training moving on between them: never "gave up"
    h = harness(retry_limit=3)
    job = h.start(h.task(behave={'crash_at_step': 3, 'crash_every': 2, 'crash_times': 4}, epochs=5))
    rec = h.wait_state(job, 'done', 'failed', timeout=60)
    assert rec['state'] == 'done', rec['message']
    assert [a['outcome'] for a in rec['attempts']] == ['crashed'] * 4 + ['done']
    assert [a['step'] for a in rec['attempts']] == [2, 4, 6, 8, 10]
    assert all(a['progressed'] for a in rec['attempts'])
    assert all('fake crash at step' in a['reason'] for a in rec['attempts'][:4])
    assert 'RuntimeError: fake crash at step 3' in rec['attempts'][0]['log_tail']     # why, from the log
    assert rec['retries'] == 4 and rec['best_step'] == 10
    api = h.client.get(f'/api/v1/jobs/{job}').get_json()
    assert [a['reason'] for a in api['attempts']][:1] == [rec['attempts'][0]['reason']]
    assert api['failures_in_row'] == 0                    # done: nothing failing now


def test_a_taken_master_port_is_retried_on_another_port_without_counting(harness):
    # the port was free when checked and taken before the trainer bound it
    import socket
    h = harness(retry_limit=0)
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(('127.0.0.1', 0))
    holder.listen()
    taken = holder.getsockname()[1]
    real = h.studio.scheduler.ports.allocate
    handed = []

    def allocate(in_use):
        handed.append(taken if not handed else real(in_use | {taken}))
        return handed[-1]
    h.studio.scheduler.ports.allocate = allocate
    try:
        job = h.start(h.task(behave={'bind_master_port': True}, epochs=1))
        rec = h.wait_state(job, 'done', 'failed')
    finally:
        holder.close()
    assert rec['state'] == 'done', rec['message']
    first, second = rec['attempts']
    assert first['outcome'] == 'port_taken' and str(taken) in first['reason'] and first['exit_code'] == 1
    assert 'EADDRINUSE' in first['log_tail']
    assert second['port'] != taken and second['outcome'] == 'done'
    assert rec['retries'] == 0 and rec['failures_in_row'] == 0


# ---- start-up: op builds, weights, caching ---------------------------------------------------------

def test_start_up_is_judged_by_the_startup_timeout_not_the_heartbeat(harness):
    h = harness(heartbeat_timeout_s=1.0, startup_timeout_s=30.0, retry_limit=0)
    job = h.start(h.task(behave={'startup_delay': 3.0}, epochs=1))       # silent while "building" its op
    rec = h.wait_state(job, 'done', 'failed')
    assert rec['state'] == 'done' and [a['outcome'] for a in rec['attempts']] == ['done'], rec['message']
    h = harness(heartbeat_timeout_s=1.0, startup_timeout_s=2.0, retry_limit=0)
    job = h.start(h.task(behave={'startup_delay': 60.0}, epochs=1))      # stuck starting up: killed at 2 s
    rec = h.wait_state(job, 'failed')
    assert rec['attempts'][0]['outcome'] == 'hung' and 'while starting up (launching)' in rec['attempts'][0]['reason']


def test_a_stale_build_lock_is_removed_before_a_launch(harness, tmp_path):
    import time
    ext = tmp_path / 'torch_extensions'
    lock = ext / 'deepspeed_shm_comm' / 'lock'
    lock.parent.mkdir(parents=True)
    lock.touch()                                          # left by a job killed while it built the op
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    h = harness(torch_extensions_dir=str(ext), build_lock_stale_s=600.0, heartbeat_timeout_s=1.0,
                startup_timeout_s=5.0, retry_limit=0)
    job = h.start(h.task(behave={'wait_build_lock': True}, epochs=1))
    rec = h.wait_state(job, 'done', 'failed')
    assert rec['state'] == 'done', rec['attempts'][-1].get('log_tail') or rec['message']
    assert not lock.exists()
    fresh = lock.parent / 'lock'
    fresh.touch()                                         # a build going on now (young lock) is left alone
    job = h.start(h.task(behave={'wait_build_lock': True}, epochs=1))
    rec = h.wait_state(job, 'failed')
    assert fresh.exists() and 'while starting up' in rec['attempts'][0]['reason']
