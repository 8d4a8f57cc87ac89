"""A real single-host Slurm cluster for tests: munged, slurmctld and slurmd (Debian's slurm-wlm) run in the
foreground as children of the test process, with every file they write under one temporary folder.

    with SlurmCluster(tmp_path / 'slurm') as cluster:     # waits until `sinfo` shows the node idle
        env = cluster.env                                 # SLURM_CONF (+ MUNGE_SOCKET) for the studio's commands

CPU-only: `NodeName=<hostname> CPUs=2`, one partition `debug`, no accounting database (the studio falls back
from `sacct` to `scontrol show job`). Needs root (slurmd runs jobs as their submitter) and the packages;
`missing()` says why a test must be skipped.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ('munged', 'mungekey', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'scontrol', 'sinfo')
SBIN = ('/usr/sbin', '/usr/bin', '/sbin')


def _which(name):
    return shutil.which(name) or next((f'{d}/{name}' for d in SBIN if os.access(f'{d}/{name}', os.X_OK)), None)


def missing():
    """Why a real cluster cannot run here (a sentence), or None."""
    gone = [d for d in DAEMONS if not _which(d)]
    if gone:
        return f'Slurm/munge not installed (missing {", ".join(gone)}; apt-get install slurm-wlm munge)'
    if os.geteuid() != 0:
        return 'the test Slurm cluster needs root (slurmd runs jobs as their submitter)'
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class SlurmCluster:
    def __init__(self, folder, cpus=2):
        self.dir = Path(folder)
        self.cpus = cpus
        self.host = socket.gethostname().split('.')[0]
        self.procs = []
        self.conf = self.dir / 'slurm.conf'
        self.socket = self.dir / 'munge' / 'munge.socket'
        self.env = {}

    # ---- set-up ----------------------------------------------------------------------------------
    def _write_files(self):
        for sub in ('munge', 'state', 'spool', 'log'):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / 'munge', 0o755)        # the socket's folder must be searchable by all
        key = self.dir / 'munge' / 'munge.key'
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        ctld, slurmd = _free_port(), _free_port()
        d = self.dir
        self.conf.write_text(f"""\
ClusterName=odeotest
SlurmctldHost={self.host}
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.socket}
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
NodeName={self.host} CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        (d / 'cgroup.conf').write_text('CgroupPlugin=autodetect\nIgnoreSystemd=yes\nCgroupAutomount=no\n')
        self.env = {'SLURM_CONF': str(self.conf), 'MUNGE_SOCKET': str(self.socket)}

    def _spawn(self, name, *args):
        log = open(self.dir / 'log' / f'{name}.out', 'ab')
        proc = subprocess.Popen([_which(name), *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **self.env}, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, timeout=60.0):
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout):
        self._write_files()
        self._spawn('munged', '--foreground', '--force', f'--key-file={self.dir}/munge/munge.key',
                    f'--socket={self.socket}', f'--pid-file={self.dir}/munge/munged.pid',
                    f'--log-file={self.dir}/log/munged.log', f'--seed-file={self.dir}/munge/munged.seed')
        self._wait(lambda: self.socket.exists(), 10, 'munged to open its socket')
        self._spawn('slurmctld', '-D', '-i', '-f', str(self.conf))
        self._wait(lambda: self.run('scontrol', 'ping').returncode == 0 and 'UP' in self.run('scontrol', 'ping').stdout,
                   timeout, 'slurmctld to answer')
        self._spawn('slurmd', '-D', '-f', str(self.conf), '-N', self.host)
        self._wait(self.idle, timeout, f'node {self.host} to be idle')
        return self

    def run(self, *argv, timeout=20):
        try:
            return subprocess.run([_which(argv[0]) or argv[0], *argv[1:]], capture_output=True, text=True,
                                  env={**os.environ, **self.env}, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(argv, 124, '', str(e))

    def idle(self):
        r = self.run('sinfo', '-h', '-N', '-o', '%N %t')
        return r.returncode == 0 and f'{self.host} idle' in r.stdout

    def _wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while not cond():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = '\n'.join(f'--- {f.name}\n' + f.read_text(errors='replace')[-2000:]
                                 for f in sorted((self.dir / 'log').glob('*')))
                raise RuntimeError(f'test Slurm cluster: {"exited: " + ", ".join(dead) if dead else "timed out"} '
                                   f'waiting for {what}\n{logs}')
            time.sleep(0.2)

    # ---- tear-down --------------------------------------------------------------------------------
    def stop(self):
        if self.procs and self.run('squeue', '-h', '-o', '%i').stdout.strip():
            self.run('scancel', '--full', '-u', 'root')
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
