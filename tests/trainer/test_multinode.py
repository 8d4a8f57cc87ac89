"""train.py over several nodes, on one machine: two deepspeed launchers with --no_ssh (node ranks 0 and
1, one CPU rank each, as Slurm's srun starts them), and the studio's hosts target, one launcher reaching
two host names over ssh (pdsh). What a team running under a scheduler relies on: the run learns with data parallelism across
the nodes and records its layout; both nodes fill the cache; a preemption signal checkpoints and exits
'requeue me'; losing a node fails the other instead of hanging; a relaunch continues exactly; a node
that cannot see the run folder stops the start naming it."""

import json
import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest

from tests.support.nodes import HOSTS, Nodes, SshServer, node_env, ssh_unavailable, write_hostfile
from tests.support.trainer import (ROOT, config_text, eval_losses, events, last_status, metric, official,
                                   wait_for, write_config)
from utils.checkpointing import complete_checkpoints
from utils.cluster import REQUEUE_EXIT

pytestmark = pytest.mark.slow

EPOCHS = 12        # 4 steps an epoch with 2 data-parallel ranks: 48 steps of ~0.1 s


@pytest.fixture(scope='module')
def fresh_dataset(tmp_path_factory):
    """The demo dataset in a folder of its own, so this module's first run fills its cache from scratch."""
    from tools.make_demo_dataset import make_demo_dataset
    demo = make_demo_dataset(tmp_path_factory.mktemp('demo') / 'demo').parent
    copy = tmp_path_factory.mktemp('nodes_demo') / 'demo'
    shutil.copytree(demo, copy, ignore=shutil.ignore_patterns('cache'))
    return copy / 'dataset.toml'


def node_config(tiny_models, dataset, folder, **extra):
    settings = dict(pipeline_stages=1, gradient_accumulation_steps=1, epochs=EPOCHS, eval_before_first_step='true',
                    eval_datasets="[{name = 'demo', config = '%s'}]" % dataset, eval_every_n_epochs=EPOCHS,
                    save_every_n_epochs=EPOCHS, checkpoint_every_n_epochs=1,
                    optimizer="type = 'adamw'\nlr = 5e-3\nweight_decay = 0.0",
                    adapter="type = 'lora'\nrank = 8\ndtype = 'float32'")
    settings.update(extra)
    settings = {k: v for k, v in settings.items() if v is not None}
    return write_config(folder, config_text(official(tiny_models, 'wan2.1-t2v-1.3b'), dataset, folder / 'out', **settings))


@pytest.fixture(scope='module')
def reference(tiny_models, fresh_dataset, tmp_path_factory):
    """An uninterrupted two-node run: the one the other tests compare with."""
    root = tmp_path_factory.mktemp('two_nodes')
    config = node_config(tiny_models, fresh_dataset, root)
    nodes = Nodes(config, root / 'run', write_hostfile(root), env=node_env(ODEO_RESOURCES_INTERVAL='1'))
    codes = nodes.wait(timeout=300)
    assert codes == [0, 0], nodes.log(0)[-3000:] + nodes.log(1)[-2000:]
    return config, root


def test_two_nodes_learn_fill_the_cache_together_and_record_the_layout(reference, fresh_dataset):
    _, root = reference
    run = root / 'run'
    before, after = eval_losses(run)
    assert after < 0.85 * before, (before, after)
    assert last_status(run)['state'] == 'done'
    assert [e['path'] for e in events(run) if e['type'] == 'artifact' and e['kind'] == 'lora'] == [
        f'epoch{EPOCHS}/adapter_model.safetensors']
    # the layout: one rank per node, a replica on each node, printed and written once
    layout = json.loads((run / 'layout.json').read_text())
    assert (layout['nodes'], layout['world'], layout['stages'], layout['dp_world']) == (2, 2, 1, 2)
    assert [(n['node'], n['ranks']) for n in layout['per_node']] == [(0, [0]), (1, [1])]
    assert not layout['split_pipelines']
    assert 'layout: 2 node(s), 2 rank(s) = 1 pipeline stage(s) x 2 data-parallel replica(s)' in \
        (root / 'run.node0.log').read_text()
    assert not (run / '.nodes').exists()                      # start-up markers removed once checked
    # every rank's device use, gathered to rank 0 (the only writer of events.jsonl)
    used = [e for e in events(run) if e['type'] == 'resources']
    assert {(e['node'], e['rank'], e['local_rank']) for e in used} == {(0, 0, 0), (1, 1, 0)}
    assert all(e['kind'] == 'cpu' and e['mem_used_mib'] > 0 and e['mem_total_mib'] >= e['mem_used_mib']
               and e['util_pct'] is not None and e['device'] == 'cpu' for e in used)
    # both nodes encoded their share into one cache folder with one index
    (cache,) = (fresh_dataset.parent / 'cache').glob('wan2.1-t2v-1.3b*')
    writers = {p.name.split('-')[1] for p in (cache / 'shards').glob('*.safetensors')}
    assert writers == {'r0', 'r1'} and (cache / 'index.json').is_file()


def test_preemption_and_a_lost_node_both_resume_exactly(reference, tmp_path):
    config, root = reference
    hostfile = write_hostfile(tmp_path)
    run = tmp_path / 'run'
    losses = lambda: metric(run, 'train/loss')   # noqa: E731

    # 1. SIGUSR1 (Slurm's --signal ahead of the time limit) to node 1's rank only: every rank checkpoints
    #    at the same step and exits with the requeue status.
    nodes = Nodes(config, run, hostfile)
    assert wait_for(lambda: len(losses()) >= 3, timeout=240), nodes.log(0)[-2000:]
    nodes.signal_ranks(1, signal.SIGUSR1)
    assert nodes.wait(timeout=120) == [REQUEUE_EXIT, REQUEUE_EXIT], nodes.log(0)[-3000:]
    preempted_at = max(losses())
    status = last_status(run)
    assert status['state'] == 'stopped' and 'preempted' in status['message'], status
    assert preempted_at < 4 * EPOCHS - 8 and (run / 'checkpoints' / f'step{preempted_at}' / 'trainer_state.json').is_file()
    assert (run / 'preempted').read_text() == f'{preempted_at}\n'      # what a batch script reads to requeue

    # 2. Continue; after the next checkpoint node 1 dies (its launcher's group is killed): node 0 must fail,
    #    not wait in a collective for a peer that is gone.
    nodes = Nodes(config, run, hostfile, extra=['--resume_from_checkpoint'])
    later = lambda: [e['step'] for e in events(run) if e['type'] == 'artifact' and e['kind'] == 'checkpoint'   # noqa: E731
                     and e['step'] > preempted_at]
    assert wait_for(later, timeout=240), nodes.log(0)[-3000:]
    nodes.kill_node(1)
    started = time.time()
    try:
        code = nodes.procs[0].wait(timeout=120)
    finally:
        nodes.kill()
    assert code != 0 and time.time() - started < 120
    assert max(losses()) < 4 * EPOCHS, 'the run finished before node 1 was killed'
    # on a busy machine another epoch may end between seeing the first checkpoint and the kill: the
    # relaunch takes the newest complete one (trainer_state.json written last)
    checkpoint_at = json.loads((complete_checkpoints(run)[-1] / 'trainer_state.json').read_text())['step']
    assert checkpoint_at in later()

    # 3. Relaunch both: the run continues from that checkpoint and ends as the uninterrupted one did.
    nodes = Nodes(config, run, hostfile, extra=['--resume_from_checkpoint'])
    assert nodes.wait(timeout=300) == [0, 0], nodes.log(0)[-3000:]
    assert f'resumed from {run}/checkpoints/step{checkpoint_at}' in nodes.log(0)
    uninterrupted = metric(root / 'run', 'train/loss')
    resumed = [e for e in events(run) if e['type'] == 'metric' and e['name'] == 'train/loss' and e['step'] > preempted_at]
    assert sorted({e['step'] for e in resumed}) == list(range(preempted_at + 1, 4 * EPOCHS + 1))
    for e in resumed:            # steps trained twice (after the checkpoint, before the kill) match too
        assert e['value'] == pytest.approx(uninterrupted[e['step']], rel=1e-5, abs=1e-6), e['step']
    assert eval_losses(run)[-1] == pytest.approx(eval_losses(root / 'run')[-1], rel=1e-5)
    assert last_status(run)['state'] == 'done'


def test_a_node_that_cannot_see_the_run_folder_fails_the_start(reference, tmp_path):
    """Node 1 runs in a mount namespace where the run folder's parent is an empty tmpfs: another disk."""
    if os.geteuid() != 0 or shutil.which('unshare') is None or subprocess.run(
            ['unshare', '-m', 'true'], capture_output=True).returncode != 0:
        pytest.skip('needs root and unshare to give one node a filesystem of its own')
    config, _ = reference
    shared = tmp_path / 'shared'
    run = shared / 'run'

    def private_mount(node, cmd):
        if node == 0:
            return cmd
        return ['unshare', '-m', 'sh', '-c', f'mount -t tmpfs tmpfs {shared} && exec "$@"', 'sh', *cmd]

    nodes = Nodes(config, run, write_hostfile(tmp_path), wrap=private_mount)
    assert nodes.wait(timeout=240) == [2, 2], nodes.log(0)[-3000:]
    status = last_status(run)
    assert status['state'] == 'failed'
    assert f'not every node can see the run folder {run}' in status['message']
    assert f'node 1 ({os.uname().nodename}): {run}/config.toml, written by rank 0, is not there' in status['message']
    assert 'node 0' not in status['message'] and 'Traceback' not in nodes.log(0)


def test_the_studio_trains_on_two_ssh_hosts_with_pdsh(make_app, data_root, tiny_model, fresh_dataset, tmp_path,
                                                      monkeypatch):
    """The studio's `hosts` target: `deepspeed --hostfile <run>/hostfile` runs here and DeepSpeed's pdsh runner
    logs into each host over ssh to start a launcher there. Two names of this machine stand for two hosts; the
    sshd is the test's own child. A login shell has none of the job's environment: the ranks there get it from
    <run>/deepspeed_env. The target's offer asks each host's nvidia-smi over the same ssh."""
    why = ssh_unavailable()
    if why:
        if os.environ.get('ODEO_REQUIRE_SSH') == '1':
            pytest.fail(f'ODEO_REQUIRE_SSH=1 but {why}')
        pytest.skip(why)
    server = SshServer(tmp_path / 'ssh')
    monkeypatch.setenv('NCCL_SOCKET_IFNAME', 'eth0')              # set for the studio: passed to every host
    monkeypatch.setenv('WANDB_API_KEY', 'not-for-the-log')         # never passed (DeepSpeed logs what it exports)
    monkeypatch.setenv('PATH', f"{server.bin}:{os.environ['PATH']}")
    shutil.copytree(fresh_dataset.parent, data_root / 'datasets' / 'demo', ignore=shutil.ignore_patterns('cache'))
    run = None
    try:
        assert server.ready(), (tmp_path / 'ssh' / 'sshd.log').read_text()
        app = make_app(launcher='deepspeed', trainer_script=str(ROOT / 'train.py'), compute_targets=('local', 'hosts'),
                       ssh_hosts=HOSTS, heartbeat_timeout_s=300.0, scheduler_interval_s=0.5)
        studio, c = app.extensions['odeo'], app.test_client()
        offers = {t['name']: t['offers'] for t in c.get('/api/v1/targets').get_json()['targets']}['hosts']
        assert [h['host'] for h in offers['hosts']] == list(HOSTS)
        for h in offers['hosts']:   # logged in (no "Permission denied"): the host's GPUs, or its word on nvidia-smi
            assert h['gpus'] or (h['error'].startswith(f"{h['host']}: ") and 'nvidia-smi' in h['error']
                                 and 'not found' in h['error']), h

        form = {'epochs': 1, 'checkpoint_every_n_minutes': None, 'checkpoint_every_n_epochs': None,
                'save_every_n_epochs': 1, 'optimizer': 'adamw', 'learning_rate': 5e-3, 'lora_rank': 4,
                'target': 'hosts', 'nodes': 2, 'gpus': 1}
        task = c.post('/api/v1/tasks', json={'form': form}).get_json()
        assert task['resources']['target'] == 'hosts' and task['resources']['nodes'] == 2, task
        job = c.post(f'/api/v1/tasks/{task["id"]}/start', json={}).get_json()['id']
        rec = wait_for_job(studio, job)
        run = data_root / rec['run_dir']
        log = (run / 'log.txt').read_text()
        assert rec['state'] == 'done', log[-4000:]
        assert (run / 'hostfile').read_text() == ''.join(f'{h} slots=1\n' for h in HOSTS)
        layout = json.loads((run / 'layout.json').read_text())
        assert [(n['node'], n['ranks']) for n in layout['per_node']] == [(0, [0]), (1, [1])]
        assert [l['name'] for l in c.get(f'/api/v1/jobs/{job}/artifacts').get_json()['loras']] == ['epoch1']
        # what pdsh ran on each host exports the job's environment, and no key
        sent = next(line for line in log.splitlines() if 'cmd = pdsh' in line)
        for export in (f'TORCH_EXTENSIONS_DIR={studio.settings.torch_extensions_dir};', 'OMP_NUM_THREADS=1;',
                       'DS_ACCELERATOR=cpu;', 'HF_HUB_OFFLINE=1;', 'NCCL_SOCKET_IFNAME=eth0;'):
            assert f'export {export}' in sent, sent
        assert 'not-for-the-log' not in log
        logins = (tmp_path / 'ssh' / 'sshd.log').read_text().count('Accepted publickey')
        assert logins >= 2 * len(HOSTS)                 # the offers' nvidia-smi, the runner's check, one per host
    finally:
        if run is not None:
            _kill_left_over(run)
        server.close()


def wait_for_job(studio, job_id, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        studio.scheduler.tick()
        rec = studio.jobs.get(job_id)
        if rec['state'] in ('done', 'failed', 'stopped'):
            return rec
        time.sleep(0.5)
    raise AssertionError(f'job {job_id} did not end within {timeout}s')


def _kill_left_over(run):
    """Ranks started through sshd are not our children: end those of this run (by their run folder) if any remain."""
    for p in psutil.process_iter(['pid', 'cmdline']):
        if str(run) in ' '.join(p.info['cmdline'] or []) and p.pid != os.getpid():
            try:
                p.kill()
            except psutil.Error:
                pass


def test_checkpoint_with_the_same_node_count_resumes_and_dp_change_warns(tmp_path, capsys):
    """resume_problem: same layout -> no warning; a checkpoint stopped inside an epoch on 2 replicas resumed
    on 1 -> a warning naming the change."""
    from utils.checkpointing import resume_problem
    ckpt = tmp_path / 'step6'
    ckpt.mkdir()
    (ckpt / 'trainer_state.json').write_text(json.dumps({'step': 6, 'epoch': 2, 'batch_in_epoch': 2, 'stages': 1,
                                                         'dp_world': 2, 'grad_accum': 1}))
    cfg = {'pipeline_stages': 1, 'gradient_accumulation_steps': 1}
    assert resume_problem(ckpt, cfg, 2) is None and 'warning' not in capsys.readouterr().out
    assert resume_problem(ckpt, cfg, 1) is None and 'dp_world 2 -> 1' in capsys.readouterr().out


def test_node_local_topology_keeps_pipelines_inside_nodes():
    """16 ranks on 2 nodes of 8, 2 stages: each pipeline is two neighbouring ranks on one node; the 8
    replicas of a stage span both nodes."""
    from utils.cluster import layout_record, node_local_topology
    topo = node_local_topology(stages=2, dp_world=8)
    ranks = [{'rank': r, 'node': r // 8, 'host': f'h{r // 8}', 'local_rank': r % 8, 'stage': topo.get_coord(r).pipe,
              'dp_rank': topo.get_coord(r).data, 'device': f'cuda:{r % 8}'} for r in range(16)]
    layout = layout_record(ranks, 2, 8)
    assert [p['ranks'] for p in layout['pipelines']][:2] == [[0, 1], [2, 3]]
    assert all(len(p['nodes']) == 1 for p in layout['pipelines']) and not layout['split_pipelines']
    assert {r['node'] for r in ranks if r['stage'] == 0} == {0, 1}
    odd = layout_record([{**r, 'node': r['rank'] // 3} for r in ranks], 2, 8)    # 3 ranks a node: some pipelines split
    assert odd['split_pipelines'] == [1, 4, 7]
