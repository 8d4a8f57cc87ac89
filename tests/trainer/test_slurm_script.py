"""tools/slurm.sh: the sbatch script it writes (the studio's, utils/slurm_script.py), submitted to a stand-in
`sbatch`, and run with stand-ins for `srun` (starts the per-node command once per node with SLURM_NODEID and
SLURMD_NODENAME set) and `scontrol`, and a stand-in deepspeed that records its arguments and which signals it
ignores, then exits with a chosen status. The same script under a real Slurm: tests/studio/test_studio_slurm.py."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.trainer import ROOT

SLURM_SH = ROOT / 'tools' / 'slurm.sh'

FAKES = {
    'sbatch': 'echo "$@" >> "$FAKE_LOG/sbatch"; echo "Submitted batch job 4242"',
    'scontrol': 'if [ "$1 $2" = "show hostnames" ]; then printf "gpu-a\\ngpu-b\\n"; else echo "$@" >> "$FAKE_LOG/scontrol"; fi',
    'srun': ('echo "$@" > "$FAKE_LOG/srun"; while [ "${1#--}" != "$1" ]; do shift; done\n'
             'names=(gpu-a gpu-b); status=0\n'
             'for n in 0 1; do SLURM_NODEID=$n SLURMD_NODENAME=${names[$n]} "$@" || status=$?; done; exit $status'),
}
DEEPSPEED = ('echo "$@" > "$FAKE_LOG/node$SLURM_NODEID"\n'
             'grep SigIgn /proc/self/status >> "$FAKE_LOG/node$SLURM_NODEID"\n'
             '[ -n "$FAKE_PREEMPT" ] && [ "$SLURM_NODEID" = 0 ] && echo 7 > "$RUN/preempted"\n'   # rank 0's marker
             'code="FAKE_EXIT_$SLURM_NODEID"; exit "${!code:-${FAKE_EXIT:-0}}"')


@pytest.fixture
def fakes(tmp_path):
    bin_dir, venv, log = tmp_path / 'bin', tmp_path / 'venv', tmp_path / 'log'
    for folder in (bin_dir, venv / 'bin', log):
        folder.mkdir(parents=True)
    for name, body in {**FAKES, **{'../venv/bin/deepspeed': DEEPSPEED}}.items():
        path = bin_dir / name
        path.write_text(f'#!/usr/bin/env bash\n{body}\n')
        path.chmod(0o755)
    config = tmp_path / 'my.toml'
    config.write_text("output_dir = 'out'\n")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(log))
    return {'env': env, 'log': log, 'venv': venv, 'config': config, 'run': tmp_path / 'shared' / 'run'}


def slurm_sh(fakes, *extra):
    cmd = ['bash', str(SLURM_SH), '--config', str(fakes['config']), '--run-dir', str(fakes['run']), '--nodes', '2',
           '--gpus-per-node', '8', '--partition', 'gpu', '--time', '24:00:00', '--venv', str(fakes['venv']), *extra]
    return subprocess.run(cmd, env=fakes['env'], capture_output=True, text=True, timeout=30)


def test_dry_run_prints_the_script_and_submits_nothing(fakes):
    result = slurm_sh(fakes, '--dry-run')
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for line in ('#SBATCH --nodes=2', '#SBATCH --ntasks-per-node=1', '#SBATCH --gpus-per-node=8',
                 '#SBATCH --partition=gpu', '#SBATCH --time=24:00:00', '#SBATCH --signal=USR1@120', '#SBATCH --requeue'):
        assert line + '\n' in text
    assert '--no_ssh --node_rank "$SLURM_NODEID"' in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert text.startswith('#!/bin/bash\n# Written by tools/slurm.sh.')
    assert subprocess.run(['bash', '-n'], input=text, text=True).returncode == 0
    assert not (fakes['log'] / 'sbatch').exists() and not fakes['run'].exists()


def run_batch_script(fakes, exit_code, **more):
    script = fakes['run'] / 'slurm.sbatch'
    env = dict(fakes['env'], SLURM_JOB_ID='4242', SLURM_JOB_NODELIST='gpu-[a-b]', FAKE_EXIT=str(exit_code), **more)
    return subprocess.run(['bash', str(script)], env=env, capture_output=True, text=True, timeout=30)


def test_submitted_script_starts_a_launcher_per_node_resumes_and_requeues(fakes):
    result = slurm_sh(fakes, '--', '--trust_cache')
    assert result.returncode == 0, result.stderr
    script = fakes['run'] / 'slurm.sbatch'
    assert (fakes['log'] / 'sbatch').read_text().strip() == str(script)

    # First start: no checkpoint yet, so no --resume_from_checkpoint; one launcher per node.
    first = run_batch_script(fakes, 0)
    assert first.returncode == 0, first.stdout + first.stderr
    for node in (0, 1):
        args, ignored = (fakes['log'] / f'node{node}').read_text().splitlines()
        assert args.startswith(f'--hostfile {fakes["run"]}/hostfile --no_ssh --node_rank {node} --master_addr gpu-a '
                               '--master_port 24242 --num_nodes 2 --num_gpus 8 train.py --deepspeed')
        assert args.endswith(f'--run_dir {fakes["run"]} --trust_cache') and '--resume_from_checkpoint' not in args
        mask = int(ignored.split()[1], 16)          # the launcher ignores SIGUSR1 (10) and SIGTERM (15)
        assert mask & (1 << 9) and mask & (1 << 14)
    assert sorted(p.name for p in (fakes['run'] / 'nodes').iterdir()) == ['gpu-a', 'gpu-b']   # both saw the folder
    assert not (fakes['log'] / 'scontrol').exists() and not (fakes['run'] / 'hostfile').exists()
    assert '--ntasks-per-node=1 --kill-on-bad-exit=1' in (fakes['log'] / 'srun').read_text()

    # A preempted attempt (exit 75) is requeued; the next start resumes from the checkpoint it wrote.
    ckpt = fakes['run'] / 'checkpoints' / 'step7'
    ckpt.mkdir(parents=True)
    (ckpt / 'trainer_state.json').write_text('{"step": 7, "epoch": 1}')
    second = run_batch_script(fakes, 75)
    assert second.returncode == 75
    assert (fakes['log'] / 'scontrol').read_text().split() == ['requeue', '4242']
    assert (fakes['log'] / 'node1').read_text().splitlines()[0].endswith(
        f'--trust_cache --resume_from_checkpoint {fakes["run"]}')


def test_refuses_missing_arguments(fakes):
    result = subprocess.run(['bash', str(SLURM_SH), '--nodes', '2'], env=fakes['env'], capture_output=True, text=True)
    assert result.returncode == 2 and '--config and --run-dir are required' in result.stderr
    assert not Path(fakes['log'] / 'sbatch').exists()


def test_a_preempted_run_is_requeued_even_when_srun_killed_a_node_but_not_after_a_stop(fakes):
    """srun ends the other nodes' tasks once one exits 75 and then reports 128+signal; rank 0's <run>/preempted
    still says the checkpoint is there. A preemption that meets a stop the studio asked for is not requeued."""
    assert slurm_sh(fakes).returncode == 0
    killed = run_batch_script(fakes, 0, FAKE_PREEMPT='1', FAKE_EXIT_0='75', FAKE_EXIT_1='137')
    assert killed.returncode == 75, killed.stdout + killed.stderr
    assert (fakes['log'] / 'scontrol').read_text().split() == ['requeue', '4242']
    (fakes['log'] / 'scontrol').unlink()
    assert run_batch_script(fakes, 0).returncode == 0                 # the next start clears the old marker
    assert not (fakes['run'] / 'preempted').exists() and not (fakes['log'] / 'scontrol').exists()
    (fakes['run'] / 'control').mkdir()
    (fakes['run'] / 'control' / 'save_quit').touch()                  # the studio asked for a stop with save
    stopped = run_batch_script(fakes, 75, FAKE_PREEMPT='1')
    assert stopped.returncode == 75 and 'not requeued' in stopped.stdout
    assert not (fakes['log'] / 'scontrol').exists()


def test_a_run_folder_slurm_cannot_carry_is_refused_by_name(fakes):
    fakes['run'] = fakes['run'].parent / 'my run'
    result = slurm_sh(fakes)
    assert result.returncode == 2 and "run_dir '" in result.stderr and 'spaces or quotes' in result.stderr
    assert not (fakes['log'] / 'sbatch').exists()
