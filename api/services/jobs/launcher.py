"""Build a job's command line and start it, as docs/architecture.md specifies.

Job kinds are a registry (KINDS) that each area service fills in its constructor: `train` runs train.py
through a launcher (training/launch.py); other kinds (`infer`, `caption`, ...) are one Python process,
`python -m api.jobs.<kind> --run_dir <run>` (module_command), that speaks the same protocol
(events.jsonl, control/, log.txt) on the devices the scheduler gave it.
"""

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...settings import REPO_ROOT
from .procs import create_time


def job_env(settings, mode, devices, port, base=None):
    env = dict(os.environ if base is None else base)
    env.pop('ODEO_TOKEN', None)                 # the studio's access token is not the job's to know
    env['PYTHONUNBUFFERED'] = '1'
    if settings.torch_extensions_dir:           # the project's JIT op builds (tools/setup.sh builds them once)
        env['TORCH_EXTENSIONS_DIR'] = settings.torch_extensions_dir
    env.pop('CUDA_VISIBLE_DEVICES', None)       # deepspeed --include decides
    if mode == 'cpu':
        env['OMP_NUM_THREADS'] = '1'            # one thread per rank: ranks share the machine's cores
        env['DS_ACCELERATOR'] = 'cpu'
        env['CUDA_VISIBLE_DEVICES'] = ''
    if settings.launcher == 'python':           # what the deepspeed launcher would have set for one rank
        env.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK='0', LOCAL_RANK='0', WORLD_SIZE='1')
        if mode == 'gpu':
            env['CUDA_VISIBLE_DEVICES'] = ','.join(str(d) for d in devices)
    return env


def module_command(module):
    """A one-process job: `python -m <module> --run_dir <run>`, seeing only its devices; the repository
    is on PYTHONPATH so the module imports from any working directory."""
    def command(settings, job, mode, devices, port, run_dir, resume_from):
        env = job_env(settings, mode, devices, port)
        env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get('PYTHONPATH')) if p)  # any cwd
        if mode == 'gpu':
            env['CUDA_VISIBLE_DEVICES'] = ','.join(str(d) for d in devices)
        return [settings.python, '-m', module, '--run_dir', str(run_dir)], env
    return command


@dataclass(frozen=True)
class JobKind:
    command: Callable          # (settings, job, mode, devices, port, run_dir, resume_from) -> (argv, env)
    resumable: bool            # a crash or hang is retried from the newest checkpoint
    needs_task: bool = True    # False: the job stands alone (e.g. captioning a dataset), no task record
    batch: Callable | None = None  # (settings, job, run_dir, resume_from) -> {trainer_args, workdir}: runs on Slurm


KINDS = {}


def register_kind(kind, command, resumable=False, needs_task=True, batch=None):
    """Areas add their job kinds here, e.g. register_kind('infer', module_command('api.jobs.infer'))."""
    KINDS[kind] = JobKind(command, resumable, needs_task, batch)


def build(settings, job, mode, devices, port, run_dir, resume_from=None):
    """(command, env) for one attempt of a job of any kind."""
    kind = job.get('kind', 'train')
    if kind not in KINDS:
        raise ValueError(f'unknown job kind {kind!r}; known: {", ".join(sorted(KINDS))}')
    return KINDS[kind].command(settings, job, mode, devices, port, Path(run_dir), resume_from)


def batch(settings, job, run_dir, resume_from=None):
    """What a Slurm batch script runs on every node for this job: {trainer_args, workdir}."""
    kind = KINDS.get(job.get('kind', 'train'))
    if not kind or not kind.batch:
        raise ValueError(f'jobs of kind {job.get("kind")!r} cannot run on Slurm')
    return kind.batch(settings, job, Path(run_dir), resume_from)


def resumable(job):
    kind = KINDS.get(job.get('kind', 'train'))
    return bool(kind and kind.resumable)


def needs_task(job):
    kind = KINDS.get(job.get('kind', 'train'))
    return not kind or kind.needs_task


def start(command, env, run_dir, cwd, header, nice=0):
    """Start the job in its own session, stdout+stderr appended to <run>/log.txt, at CPU niceness `nice`
    (set before the launcher starts its ranks, which inherit it). Returns (Popen, create_time)."""
    run_dir = Path(run_dir)
    (run_dir / 'control').mkdir(parents=True, exist_ok=True)
    with open(run_dir / 'log.txt', 'ab') as log:
        log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} {header}\n=== {" ".join(command)}\n'.encode())
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=str(cwd), start_new_session=True)
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, proc.pid, nice)
        except OSError:
            pass
    return proc, create_time(proc.pid)
