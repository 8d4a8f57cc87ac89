"""The trainer's command line (and train_taehv.py's, for `taehv` jobs): `train.py --deepspeed --config <run>/config.toml --run_dir <run>` through a
launcher. Launchers are a registry: `deepspeed` (the real path: GPUs by --include, CPU ranks by
--num_gpus, or the hosts of `<run>/hostfile` for the `hosts` target) and `python` (one process, no launcher:
the tests' fake trainer, or a quick single-device run). On Slurm, `train_batch` gives the batch script
(utils/slurm_script.py) train.py's arguments; the script starts one launcher per node.

The hosts target's ranks start over ssh (pdsh) with a login environment: what they must share with the
studio's own launch (TORCH_EXTENSIONS_DIR, OMP_NUM_THREADS, DS_ACCELERATOR, HF_HUB_OFFLINE, NCCL_*, ...) goes
into `<run>/deepspeed_env`, which DeepSpeed's runner exports on every host (DS_ENV_FILE names it). Only an
allow-list goes: DeepSpeed prints every exported value into the job's log, which every studio user can read,
so neither the studio's settings and tokens nor the operator's ~/.deepspeed_env (where keys often live) are
passed; set what the ranks need (NCCL_SOCKET_IFNAME, ...) in the studio's environment.
"""

import logging
import re
from pathlib import Path

from utils.fsutil import atomic_write_text

from ..jobs.launcher import job_env

log = logging.getLogger(__name__)

NODE_ENV = re.compile(r'^(TORCH_|OMP_|MKL_|KMP_|DS_|NCCL_|GLOO_)|'       # threads, ops, collectives
                      r'^(HF_HUB_OFFLINE|HF_HOME|HF_HUB_CACHE|PYTHONUNBUFFERED|'
                      r'ODEO_COLLECTIVE_TIMEOUT|ODEO_RESOURCES_INTERVAL|ODEO_STALL_TIMEOUT|ODEO_BUILD_LOCK_STALE_S)$')
NODE_ENV_SKIP = {'DS_ENV_FILE'}
UNSAFE_VALUE = re.compile(r'["$`\\\n]')     # DeepSpeed's runner puts values in a shell line in double quotes


def _trainer_args(script, config, run_dir, resume_from):
    args = [str(script), '--deepspeed', '--config', str(config), '--run_dir', str(run_dir)]
    if resume_from:
        args += ['--resume_from_checkpoint', str(resume_from)]
    return args


def deepspeed_command(settings, mode, devices, port, trainer_args, hostfile=None):
    if hostfile:            # the hosts target: ranks on the hosts the file names, started over ssh
        path, first, nodes, gpus = hostfile
        where = ['--hostfile', str(path), '--num_nodes', str(nodes), '--num_gpus', str(gpus), '--master_addr', first]
    elif mode == 'gpu':
        where = [f'--include=localhost:{",".join(str(d) for d in devices)}']
    else:
        where = ['--num_gpus', str(len(devices))]
    return [settings.deepspeed_path, *where, '--master_port', str(port), *trainer_args]


def python_command(settings, mode, devices, port, trainer_args, hostfile=None):
    return [settings.python, *trainer_args]


LAUNCHERS = {'deepspeed': deepspeed_command, 'python': python_command}


def train_command(settings, job, mode, devices, port, run_dir, resume_from=None, script=None):
    run_dir = Path(run_dir)
    args = _trainer_args(script or settings.trainer_script, run_dir / 'config.toml', run_dir, resume_from)
    hostfile = None
    if job.get('target') == 'hosts':
        first = (run_dir / 'hostfile').read_text().split()[0]
        hostfile = (run_dir / 'hostfile', first, job['request'].get('nodes', 1), job['request']['gpus'])
    command = LAUNCHERS[settings.launcher](settings, mode, devices, port, args, hostfile)
    env = job_env(settings, mode, devices, port)
    if hostfile:
        env['DS_ENV_FILE'] = str(write_node_env(run_dir / 'deepspeed_env', env))
    return command, env


def write_node_env(path, env):
    """`KEY=VALUE` lines for DeepSpeed's runner: what the job's environment sets that the ranks on other hosts
    need (NODE_ENV). A value a shell line cannot carry is left out, with a warning."""
    lines = {}
    for key, value in sorted(env.items()):
        if NODE_ENV.match(key) and key not in NODE_ENV_SKIP:
            if UNSAFE_VALUE.search(value):
                log.warning('%s: %s is not passed to the other hosts (its value holds a quote, $, ` or \\)', path, key)
                continue
            lines[key] = value
    atomic_write_text(path, ''.join(f'{k}={v}\n' for k, v in lines.items()))
    return Path(path)


def train_batch(settings, job, run_dir, resume_from=None):
    """train.py and its arguments for the Slurm batch script (the script adds --resume_from_checkpoint)."""
    run_dir = Path(run_dir)
    return {'trainer_args': _trainer_args(settings.trainer_script, run_dir / 'config.toml', run_dir, None),
            'workdir': str(Path(settings.trainer_script).parent)}


def taehv_command(settings, job, mode, devices, port, run_dir, resume_from=None):
    """A `taehv` job: train_taehv.py (next to the trainer script) through the same launcher and flags."""
    script = Path(settings.trainer_script).with_name('train_taehv.py')
    return train_command(settings, job, mode, devices, port, run_dir, resume_from, script=script)
