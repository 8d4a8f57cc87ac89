"""The trainer's command line (and train_taehv.py's, for `taehv` jobs): `train.py --deepspeed --config <run>/config.toml --run_dir <run>` through a
launcher. Launchers are a registry: `deepspeed` (the real path: GPUs by --include, CPU ranks by
--num_gpus, or the hosts of `<run>/hostfile` for the `hosts` target) and `python` (one process, no launcher:
the tests' fake trainer, or a quick single-device run). On Slurm, `train_batch` gives the batch script
(utils/slurm_script.py) train.py's arguments; the script starts one launcher per node.
"""

from pathlib import Path

from ..jobs.launcher import job_env


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
    return command, job_env(settings, mode, devices, port)


def train_batch(settings, job, run_dir, resume_from=None):
    """train.py and its arguments for the Slurm batch script (the script adds --resume_from_checkpoint)."""
    run_dir = Path(run_dir)
    return {'trainer_args': _trainer_args(settings.trainer_script, run_dir / 'config.toml', run_dir, None),
            'workdir': str(Path(settings.trainer_script).parent)}


def taehv_command(settings, job, mode, devices, port, run_dir, resume_from=None):
    """A `taehv` job: train_taehv.py (next to the trainer script) through the same launcher and flags."""
    script = Path(settings.trainer_script).with_name('train_taehv.py')
    return train_command(settings, job, mode, devices, port, run_dir, resume_from, script=script)
