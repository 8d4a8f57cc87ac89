"""The trainer's command line (and train_taehv.py's, for `taehv` jobs): `train.py --deepspeed --config <run>/config.toml --run_dir <run>` through a
launcher. Launchers are a registry: `deepspeed` (the real path: GPUs by --include, CPU ranks by
--num_gpus) and `python` (one process, no launcher: the tests' fake trainer, or a quick single-device run).
"""

from pathlib import Path

from ..jobs.launcher import job_env


def _trainer_args(script, config, run_dir, resume_from):
    args = [str(script), '--deepspeed', '--config', str(config), '--run_dir', str(run_dir)]
    if resume_from:
        args += ['--resume_from_checkpoint', str(resume_from)]
    return args


def deepspeed_command(settings, mode, devices, port, trainer_args):
    if mode == 'gpu':
        where = [f'--include=localhost:{",".join(str(d) for d in devices)}']
    else:
        where = ['--num_gpus', str(len(devices))]
    return [settings.deepspeed_path, *where, '--master_port', str(port), *trainer_args]


def python_command(settings, mode, devices, port, trainer_args):
    return [settings.python, *trainer_args]


LAUNCHERS = {'deepspeed': deepspeed_command, 'python': python_command}


def train_command(settings, job, mode, devices, port, run_dir, resume_from=None, script=None):
    run_dir = Path(run_dir)
    args = _trainer_args(script or settings.trainer_script, run_dir / 'config.toml', run_dir, resume_from)
    return LAUNCHERS[settings.launcher](settings, mode, devices, port, args), job_env(settings, mode, devices, port)


def taehv_command(settings, job, mode, devices, port, run_dir, resume_from=None):
    """A `taehv` job: train_taehv.py (next to the trainer script) through the same launcher and flags."""
    script = Path(settings.trainer_script).with_name('train_taehv.py')
    return train_command(settings, job, mode, devices, port, run_dir, resume_from, script=script)
