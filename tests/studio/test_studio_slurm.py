"""Training on Slurm against a real single-host cluster (tests/support/slurm_cluster.py: munged, slurmctld and
slurmd of Debian's slurm-wlm, CPU-only) with the fake trainer: submit, pending with Slurm's reason, running,
a studio restart in between, stop with save, resume, and a preemption (`scontrol requeue`) that resumes from the
checkpoint. Skipped without the packages or root, except in CI (ODEO_REQUIRE_SLURM=1), where that fails."""

import os
import subprocess
import sys

import pytest

from tests.support.slurm_cluster import SlurmCluster, missing
from tests.support.studio import REPO, StudioProcess, free_port, train_form, wait_until, write_dataset

SLURM = {'compute_targets': 'local,slurm', 'slurm_poll_s': 0.2, 'scheduler_interval_s': 0.2, 'stop_grace_s': 3.0,
         'kill_grace_s': 3.0}


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    why = missing()
    if why:
        if os.environ.get('ODEO_REQUIRE_SLURM') == '1':
            pytest.fail(f'ODEO_REQUIRE_SLURM=1 but {why}')
        pytest.skip(why)
    c = SlurmCluster(tmp_path_factory.mktemp('slurm'))
    saved = {k: os.environ.get(k) for k in ('SLURM_CONF', 'MUNGE_SOCKET')}
    c.start()
    os.environ.update(c.env)            # the studio's commands (and its child processes) find this cluster
    yield c
    c.stop()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture
def studio(cluster, data_root, tiny_model):
    procs = []

    def make():
        p = StudioProcess(data_root, free_port(), **SLURM)
        procs.append(p)
        return p.start()
    yield make
    for p in procs:
        p.kill()
    cluster.run('scancel', '-u', 'root')
    wait_until(lambda: not cluster.run('squeue', '-h', '-o', '%i').stdout.strip(), 30, what='the queue to empty')


def job_of(s, job_id):
    return s.call('GET', f'/jobs/{job_id}')[1]


def step_of(s, job_id):
    return s.call('GET', f'/jobs/{job_id}/progress')[1]['step'] or 0


def start_slurm_task(s, model, epochs):
    form = train_form(model, 'demo', epochs=epochs, target='slurm', nodes=1)
    status, task = s.call('POST', '/tasks', {'form': form})
    assert status == 201, task
    assert task['resources'] == {'gpus': 1, 'gpu_ids': None, 'target': 'slurm', 'nodes': 1}
    status, job = s.call('POST', f'/tasks/{task["id"]}/start', {})
    assert status == 202, job
    assert job['target'] == 'slurm'
    return job['id']


def test_submit_pending_running_restart_stop_with_save_and_resume(cluster, studio, data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.15, 'heartbeat_interval': 0.2})
    blocker = cluster.run('sbatch', '--parsable', '-c', '2', '-o', '/dev/null', '--wrap', 'sleep 300').stdout.strip()
    s = studio()
    job = start_slurm_task(s, tiny_model, epochs=40)

    # pending behind the blocker: Slurm's reason is the queue's "waiting because"
    rec = wait_until(lambda: (r := job_of(s, job))['slurm_job_id'] and r['attempts'][-1].get('slurm_reason') and r,
                     20, what='the Slurm job to be pending')
    sid = rec['slurm_job_id']
    assert rec['state'] == 'running' and rec['attempts'][-1]['slurm_state'] == 'PENDING'
    entry = next(e for e in s.call('GET', '/queue')[1]['jobs'] if e['job_id'] == job)
    # behind a job that holds the node Slurm says Resources, or Priority when its scheduler has not looked yet
    assert entry['slurm_job_id'] == sid and entry['waiting_reason'] in (f'Slurm job {sid} pending: Resources',
                                                                         f'Slurm job {sid} pending: Priority')
    script = (data_root / rec['run_dir'] / 'slurm.sbatch').read_text()
    assert '#SBATCH --job-name=odeo-' + job in script and '#SBATCH --requeue' in script

    # running once the node is free
    cluster.run('scancel', blocker)
    wait_until(lambda: step_of(s, job) >= 3, 30, what='training on Slurm')
    rec = job_of(s, job)
    assert rec['attempts'][-1]['slurm_state'] == 'RUNNING' and rec['attempts'][-1]['slurm_nodes'] == cluster.host
    assert (data_root / rec['run_dir'] / 'nodes' / cluster.host).exists()      # the node saw the run folder

    # a studio restart re-attaches by Slurm job id
    s.kill()
    assert sid in cluster.run('squeue', '-h', '-o', '%i').stdout.split()      # the job outlives the studio
    s = studio()
    rec = job_of(s, job)
    assert rec['state'] == 'running' and len(rec['attempts']) == 1 and rec['slurm_job_id'] == sid
    before = step_of(s, job)
    wait_until(lambda: step_of(s, job) > before, 20, what='progress after the restart')

    # stop with save: control/save_quit on the shared folder; the trainer saves and exits; Slurm job completes
    status, _ = s.call('POST', f'/jobs/{job}/stop', {'save': True})
    assert status == 202
    rec = wait_until(lambda: (r := job_of(s, job))['state'] == 'stopped' and r, 30, what='the stop')
    att = rec['attempts'][-1]
    assert att['outcome'] == 'stopped' and att['exit_code'] == 0 and att['slurm_state'] == 'COMPLETED'
    run = data_root / rec['run_dir']
    stopped_at = step_of(s, job)
    assert (run / f'step{stopped_at}' / 'adapter_model.safetensors').is_file()
    assert (run / 'checkpoints' / f'step{stopped_at}' / 'trainer_state.json').is_file()

    # resume: a new Slurm job from the checkpoint, to the end
    status, rec = s.call('POST', f'/jobs/{job}/resume', {})
    assert status in (200, 202), rec
    rec = wait_until(lambda: (r := job_of(s, job))['state'] in ('done', 'failed') and r, 60, what='the resumed run')
    assert rec['state'] == 'done', rec['message']
    assert len(rec['attempts']) == 2 and rec['attempts'][1]['slurm_job_id'] not in (None, sid)
    assert rec['attempts'][1]['resume_from'].endswith(f'checkpoints/step{stopped_at}')
    assert f'at step {stopped_at}' in (run / 'events.jsonl').read_text()


def test_preemption_requeue_resumes_from_the_checkpoint(cluster, studio, data_root, tiny_model):
    write_dataset(data_root / 'datasets' / 'demo', behave={'step_time': 0.15, 'heartbeat_interval': 0.2})
    s = studio()
    job = start_slurm_task(s, tiny_model, epochs=25)
    wait_until(lambda: step_of(s, job) >= 5, 40, what='a checkpoint or two')
    sid = job_of(s, job)['slurm_job_id']
    assert cluster.run('scontrol', 'requeue', sid).returncode == 0
    # Slurm holds a requeued job back for a while (BeginTime); an admin's preemption lets it go at once
    wait_until(lambda: cluster.run('scontrol', 'update', f'JobId={sid}', 'StartTime=now') and
               len(job_of(s, job)['attempts']) == 2, 40, every=0.3, what='the requeue to become the next attempt')
    rec = wait_until(lambda: (r := job_of(s, job))['state'] in ('done', 'failed') and r, 60, what='the run to end')
    assert rec['state'] == 'done', rec['message']
    first, second = rec['attempts'][0], rec['attempts'][-1]
    assert first['outcome'] == 'interrupted' and 'Slurm requeued' in first['reason'], first
    assert rec['retries'] == 1
    events = (data_root / rec['run_dir'] / 'events.jsonl').read_text()
    resumed = [line for line in events.splitlines() if 'resuming from' in line]
    assert resumed and 'at step 0' not in resumed[-1]           # from its checkpoint, not from the start
    if second['slurm_job_id'] == sid:                           # Slurm's own rerun of the requeued job went on
        assert 'restart 1' in (data_root / rec['run_dir'] / 'log.txt').read_text()
    else:                                                       # it could not be read in time: a new batch job
        shown = cluster.run('scontrol', 'show', 'job', sid).stdout   # replaced it, and it never ran beside that one
        assert 'JobState=CANCELLED' in shown, shown


def test_sbatch_script_shape(tmp_path):
    """The script the studio and tools/slurm.sh share: one launcher per node through srun."""
    out = subprocess.run([sys.executable, '-m', 'utils.slurm_script', '--run_dir', str(tmp_path), '--nodes', '2',
                          '--gpus_per_node', '4', '--partition', 'gpu', '--time_limit', '1:00:00',
                          '--sbatch_option=--constraint=a100', '--out', '-', '--', 'train.py', '--deepspeed', '--config', 'c.toml'],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for line in ('#SBATCH --nodes=2', '#SBATCH --gpus-per-node=4', '#SBATCH --partition=gpu', '#SBATCH --time=1:00:00',
                 '#SBATCH --constraint=a100', '#SBATCH --requeue', f'#SBATCH --output={tmp_path}/log.txt'):
        assert line in text.splitlines(), line
    assert '--no_ssh --node_rank "$SLURM_NODEID" --master_addr "$MASTER_ADDR"' in text
    assert '--num_nodes 2 --num_gpus 4 train.py --deepspeed --config c.toml' in text
    assert subprocess.run(['bash', '-n'], input=text, text=True).returncode == 0


def test_targets_are_checked_and_hosts_get_a_hostfile(make_app, data_root, tiny_model, tmp_path):
    """No cluster needed: a target the settings do not offer is refused when the job is asked for; the hosts
    target writes a DeepSpeed hostfile and launches with it."""
    from api.services.jobs.targets import HostsTarget
    from api.services.training.launch import train_command
    write_dataset(data_root / 'datasets' / 'demo')
    c = make_app().test_client()
    task = c.post('/api/v1/tasks', json={'form': train_form(tiny_model, 'demo', target='slurm', nodes=2)}).get_json()
    assert task['resources'] == {'gpus': 1, 'gpu_ids': None, 'target': 'slurm', 'nodes': 2}
    r = c.post(f'/api/v1/tasks/{task["id"]}/start', json={})
    assert r.status_code == 422 and "target 'slurm' is not offered" in r.get_json()['error']['message']
    r = c.patch(f'/api/v1/tasks/{task["id"]}', json={'form': {'gpu_ids': [0]}})
    assert r.status_code == 400 and r.get_json()['error']['field'] == 'gpu_ids'

    settings = make_app(compute_targets=('local', 'hosts'), ssh_hosts=('a:4', 'b:4'), launcher='deepspeed').extensions['odeo'].settings
    path, first = HostsTarget(settings).write_hostfile(tmp_path, 2, 4)
    assert path.read_text() == 'a slots=4\nb slots=4\n' and first == 'a'
    job = {'target': 'hosts', 'request': {'gpus': 4, 'gpu_ids': None, 'target': 'hosts', 'nodes': 2}}
    argv, _ = train_command(settings, job, 'gpu', [], 29501, tmp_path)
    assert argv[1:9] == ['--hostfile', str(path), '--num_nodes', '2', '--num_gpus', '4', '--master_addr', 'a']


def test_the_hosts_environment_file_carries_what_ranks_need_and_nothing_secret(tmp_path):
    """<run>/deepspeed_env for the hosts target: the job's thread, op and collective knobs; never a studio
    setting, a token or a hub key (DeepSpeed prints what it exports into the job's log); a value a shell line
    cannot carry is left out rather than breaking the launch."""
    from api.services.training.launch import write_node_env
    env = {'OMP_NUM_THREADS': '1', 'TORCH_EXTENSIONS_DIR': '/srv/odeo/build/ext', 'DS_ACCELERATOR': 'cpu',
           'HF_HUB_OFFLINE': '1', 'ODEO_COLLECTIVE_TIMEOUT': '600', 'NCCL_SOCKET_IFNAME': 'ib0',
           'ODEO_DATA_ROOT': '/data', 'ODEO_TOKEN': 'secret', 'HF_TOKEN': 'hf_secret', 'WANDB_API_KEY': 'k',
           'NCCL_DEBUG': 'INFO "quoted"', 'PATH': '/usr/bin', 'DS_ENV_FILE': '/x', 'PYTHONPATH': '/elsewhere'}
    (tmp_path / 'run').mkdir()
    path = write_node_env(tmp_path / 'run' / 'deepspeed_env', env)
    lines = dict(line.split('=', 1) for line in path.read_text().splitlines())
    assert lines == {'OMP_NUM_THREADS': '1', 'TORCH_EXTENSIONS_DIR': '/srv/odeo/build/ext', 'DS_ACCELERATOR': 'cpu',
                     'HF_HUB_OFFLINE': '1', 'ODEO_COLLECTIVE_TIMEOUT': '600', 'NCCL_SOCKET_IFNAME': 'ib0'}
