"""Slurm through its commands (sbatch, squeue, scontrol, sacct, scancel, sinfo), run with `subprocess`.

Output is read in `--format` / `-O` forms with a `|` delimiter (they read the same on every Slurm release;
`--json` changes shape between releases). A finished job is read from `scontrol show job` while the controller
remembers it (MinJobAge), else from `sacct` (needs accounting), else it is unknown.

    cli = SlurmCli(bin_dir='')                     # the commands on PATH; SLURM_CONF from the environment
    sid = cli.submit('/data/runs/t/j1/slurm.sbatch')
    cli.jobs([sid])                                # {sid: SlurmJob(state='PENDING', reason='Resources', ...)}
"""

import getpass
import os
import subprocess
from dataclasses import dataclass

ACTIVE = ('PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'SUSPENDED', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED',
          'RESIZING', 'SIGNALING', 'STAGE_OUT', 'STOPPED', 'RESV_DEL_HOLD')
WAITING = ('PENDING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESV_DEL_HOLD')
SQUEUE_FIELDS = ('JobID', 'State', 'Reason', 'RestartCnt', 'StartTime', 'NodeList', 'Name')


class SlurmError(RuntimeError):
    pass


@dataclass(frozen=True)
class SlurmJob:
    id: str
    state: str                  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED, ...
    reason: str = ''            # why it waits (Resources, Priority, BeginTime, ...), else empty
    restarts: int = 0           # times Slurm requeued it
    start: str = ''             # start time of its current run
    nodes: str = ''
    name: str = ''
    exit_code: int | None = None    # finished jobs: the batch script's exit status
    signal: int | None = None       # ... or the signal that ended it

    @property
    def active(self):
        return self.state in ACTIVE

    @property
    def waiting(self):
        return self.state in WAITING


def _int(text, default=0):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _reason(text):
    return '' if text in (None, 'None') else text


def _exit(text):
    """'0:0' (code:signal) -> (code, signal)."""
    code, _, sig = (text or '').partition(':')
    return _int(code, None), _int(sig, None)


class SlurmCli:
    def __init__(self, bin_dir='', timeout=30.0, env=None):
        self.bin_dir = bin_dir
        self.timeout = timeout
        self.env = env                  # None: the studio's environment (SLURM_CONF, MUNGE_SOCKET, ...)

    def _cmd(self, name):
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def run(self, name, *args, check=True, cwd=None):
        try:
            r = subprocess.run([self._cmd(name), *args], capture_output=True, text=True, timeout=self.timeout,
                               env=self.env, stdin=subprocess.DEVNULL, cwd=None if cwd is None else str(cwd))
        except (OSError, subprocess.SubprocessError) as e:
            raise SlurmError(f'{name}: {e}') from None
        if check and r.returncode != 0:
            raise SlurmError(f'{name} {" ".join(args)}: {(r.stderr or r.stdout).strip() or f"exit {r.returncode}"}')
        return r

    # ---- jobs -------------------------------------------------------------------------------------
    def submit(self, script, cwd=None):
        """sbatch the script; the Slurm job id."""
        r = self.run('sbatch', '--parsable', str(script), cwd=cwd)
        sid = r.stdout.strip().split(';')[0]
        if not sid.isdigit():
            raise SlurmError(f'sbatch gave no job id: {r.stdout.strip()!r} {r.stderr.strip()!r}')
        return sid

    def jobs(self, ids):
        """{id: SlurmJob} for the ids given; ids the queue no longer lists are read from scontrol, then sacct,
        and are missing from the answer when neither knows them."""
        ids = [str(i) for i in ids if i]
        if not ids:
            return {}
        fmt = ','.join(f'{f}:|' for f in SQUEUE_FIELDS)
        r = self.run('squeue', '-h', '-t', 'all', '-u', getpass.getuser(), '-O', fmt)
        found = {}
        for line in r.stdout.splitlines():
            cols = [c.strip() for c in line.split('|')]
            if len(cols) >= len(SQUEUE_FIELDS) and cols[0] in ids:
                found[cols[0]] = SlurmJob(cols[0], cols[1], _reason(cols[2]), _int(cols[3]), cols[4], cols[5], cols[6])
        for sid in ids:
            job = found.get(sid)
            if job is None or not job.active:           # finished: the exit code is not in squeue's columns
                done = self.show(sid) or self.accounted(sid)
                if done:
                    found[sid] = done
        return found

    def show(self, sid):
        """`scontrol show job -o`, or None when the controller no longer knows the job."""
        r = self.run('scontrol', 'show', 'job', '-o', str(sid), check=False)
        if r.returncode != 0 and 'invalid job id' not in r.stderr.lower():
            # a busy controller ("Socket timed out ...") says nothing about the job: never read that as "gone"
            raise SlurmError(f'scontrol show job {sid}: {r.stderr.strip() or f"exit code {r.returncode}"}')
        if r.returncode != 0 or not r.stdout.strip():
            return None
        kv = dict(part.split('=', 1) for part in r.stdout.split() if '=' in part)
        code, sig = _exit(kv.get('ExitCode'))
        return SlurmJob(str(sid), kv.get('JobState', 'UNKNOWN'), _reason(kv.get('Reason')), _int(kv.get('Restarts')),
                        kv.get('StartTime', ''), kv.get('NodeList', ''), kv.get('JobName', ''), code, sig)

    def accounted(self, sid):
        """The job from `sacct` (accounting storage), or None."""
        r = self.run('sacct', '-n', '-P', '-X', '-j', str(sid), '-o', 'JobID,State,ExitCode,Start,NodeList,JobName',
                     check=False)
        for line in r.stdout.splitlines() if r.returncode == 0 else []:
            cols = line.split('|')
            if len(cols) >= 6 and cols[0] == str(sid):
                code, sig = _exit(cols[2])
                return SlurmJob(str(sid), cols[1].split()[0], '', 0, cols[3], cols[4], cols[5], code, sig)
        return None

    def by_name(self, name):
        """Ids of active jobs of ours with this name (a submission the studio did not get to record)."""
        r = self.run('squeue', '-h', '-u', getpass.getuser(), '-n', name, '-o', '%i', check=False)
        return [line.strip() for line in r.stdout.splitlines() if line.strip().isdigit()]

    def cancel(self, sid, signal=None):
        """scancel; with `signal` (e.g. 'TERM') only that signal to the job's steps."""
        args = ([f'--signal={signal}'] if signal else []) + [str(sid)]
        self.run('scancel', *args, check=False)

    # ---- what the cluster offers ------------------------------------------------------------------------
    def partitions(self):
        """[{name, default, state, nodes, idle_nodes, cpus_per_node, gres, time_limit}] from sinfo."""
        r = self.run('sinfo', '-h', '-o', '%P|%a|%D|%c|%G|%l|%t')
        parts = {}
        for line in r.stdout.splitlines():
            cols = line.split('|')
            if len(cols) < 7:
                continue
            name = cols[0].rstrip('*')
            p = parts.setdefault(name, {'name': name, 'default': cols[0].endswith('*'), 'state': cols[1], 'nodes': 0,
                                        'idle_nodes': 0, 'cpus_per_node': cols[3], 'gres': cols[4],
                                        'time_limit': cols[5]})
            p['nodes'] += _int(cols[2])
            if cols[6].startswith('idle'):
                p['idle_nodes'] += _int(cols[2])
        return list(parts.values())
