"""Compute targets: where a job's processes run and how the studio reaches them.

- `local` (default): this machine; processes the studio starts, watched by pid + start time, devices from the
  GPU inventory (launcher.py, procs.py, gpus.py).
- `slurm`: a batch job per attempt: `<run>/slurm.sbatch` (utils/slurm_script.py) submitted with `sbatch`, watched
  with `squeue` / `scontrol` / `sacct`, stopped with `scancel --signal=TERM` then `scancel`. Slurm queues it, so
  the studio's queue does not hold it back; a Slurm requeue (preemption, node failure) is the job's next attempt.
- `hosts`: the `ssh_hosts` setting as a DeepSpeed hostfile (`<run>/hostfile`); the launcher runs here and starts the
  ranks over ssh, so the job is watched like a local one; each host's GPUs are read with `nvidia-smi` over ssh.

A job names its target in `request.target` (copied to `job.target`); no target means `local`.
"""

import logging
import time
from pathlib import Path

from utils.slurm_script import ScriptSpec, write

from ..errors import Invalid
from . import launcher, procs
from .gpus import NvidiaSmiProvider, ProviderUnavailable
from .slurm import SlurmCli, SlurmError

log = logging.getLogger(__name__)
NAMES = ('local', 'slurm', 'hosts')
NETWORK_FS = ('nfs', 'nfs4', 'cifs', 'smb3', 'lustre', 'gpfs', 'beegfs', 'cephfs', 'ceph', 'glusterfs', 'fuse.glusterfs',
              'fuse.sshfs', 'wekafs', 'pvfs2', 'orangefs', 'fuse.juicefs', 'virtiofs', '9p')


def filesystem_of(path, mounts='/proc/mounts'):
    """The filesystem type of the mount holding `path` (longest mount point that is a prefix), or None."""
    path, best = str(Path(path).resolve()), (None, '')
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            point = parts[1].replace('\\040', ' ')
            if (path == point or path.startswith(point.rstrip('/') + '/')) and len(point) >= len(best[1]):
                best = (parts[2], point)
    return best[0]


def shared_check(settings):
    """What must be shared with the nodes (the data root, the model folders) and whether each lies on a network
    filesystem; a local one is only a warning (a cluster may mount it on every node at the same path)."""
    folders = [settings.data_path] + [r for r in settings.all_model_roots if not str(r).startswith(str(settings.data_path))]
    out = []
    for folder in folders:
        fs = filesystem_of(folder)
        out.append({'path': str(folder), 'filesystem': fs, 'network': fs in NETWORK_FS,
                    'warning': None if fs in NETWORK_FS else
                    f'{folder} is on {fs or "an unknown filesystem"}, not a network filesystem: every node must see '
                    'it at the same path (a node that cannot fails the start, naming itself)'})
    return out


def target_of(job_or_request):
    return (job_or_request or {}).get('target') or 'local'


def slurm_job_name(job):
    return f'odeo-{job["id"]}'


class LocalTarget:
    name = 'local'

    def __init__(self, inventory):
        self.inventory = inventory

    def offers(self):
        snap = self.inventory.snapshot()
        return {'nodes': 1, 'mode': snap.mode, 'devices': len(snap.devices), 'message': snap.message}

    @staticmethod
    def signal(job, sig):
        att = job['attempts'][-1]
        return procs.signal_job(att.get('pid'), att.get('create_time'), procs.SIGNALS[sig])


class HostsTarget(LocalTarget):
    """The `ssh_hosts` setting: 'name' or 'name:slots' each. The launcher is a local process."""
    name = 'hosts'

    def __init__(self, settings, ssh=('ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5')):
        self.settings = settings
        self.ssh = list(ssh)

    def hosts(self):
        out = []
        for entry in self.settings.ssh_hosts:
            name, _, slots = str(entry).partition(':')
            out.append((name.strip(), int(slots) if slots.strip().isdigit() else None))
        return out

    def offers(self):
        hosts = []
        for name, slots in self.hosts():
            try:
                smi = NvidiaSmiProvider(run=lambda h=name: NvidiaSmiProvider._run(self.ssh + [h], timeout=15))
                gpus = [d.__dict__ for d in smi.devices()]
                hosts.append({'host': name, 'slots': slots or len(gpus), 'gpus': gpus, 'error': None})
            except ProviderUnavailable as e:
                hosts.append({'host': name, 'slots': slots, 'gpus': [], 'error': str(e)})
        return {'nodes': len(hosts), 'hosts': hosts}

    def write_hostfile(self, run_dir, nodes, gpus):
        """`<run>/hostfile` naming the first `nodes` hosts with `gpus` slots each; the first host's name."""
        hosts = self.hosts()[:nodes]
        path = Path(run_dir) / 'hostfile'
        path.write_text(''.join(f'{name} slots={gpus}\n' for name, _ in hosts))
        return path, hosts[0][0]

    def check(self, request):
        n = len(self.hosts())
        if request.get('nodes', 1) > n:
            raise Invalid(f'needs {request.get("nodes", 1)} hosts; the ssh_hosts setting lists {n}', field='nodes')


class SlurmTarget:
    name = 'slurm'
    OPTIONS = ('partition', 'account', 'qos', 'time_limit', 'gpus_per_node', 'sbatch_options')

    def __init__(self, settings, cli=None, clock=time.monotonic):
        self.settings = settings
        self.cli = cli or SlurmCli(settings.slurm_bin)
        self.clock = clock
        self._seen = {}                 # Slurm job id -> SlurmJob of the last reading
        self._read_at = None
        self.error = None               # why the last reading failed (shown; jobs are left as they were)

    # ---- what a job asks for ----------------------------------------------------------------------------
    def options(self, request):
        """The settings' slurm_* values with the task's own `slurm` entries on top."""
        s = self.settings
        base = {'partition': s.slurm_partition, 'account': s.slurm_account, 'qos': s.slurm_qos,
                'time_limit': s.slurm_time_limit, 'gpus_per_node': s.slurm_gpus_per_node,
                'sbatch_options': list(s.slurm_sbatch_options)}
        own = {k: v for k, v in (request.get('slurm') or {}).items() if v not in (None, '')}
        return {**base, **own}

    def check(self, request):
        nodes, top = request.get('nodes', 1), self.settings.slurm_max_nodes
        if nodes > top:
            raise Invalid(f'needs {nodes} nodes; slurm_max_nodes allows {top}', field='nodes')
        root = str(self.settings.data_path)
        if any(c.isspace() or c in '"\'' for c in root):
            raise Invalid(f'the data root {root!r} holds a space or a quote, which a Slurm batch script cannot carry '
                          f'in its #SBATCH lines (--output, --chdir); use a data root without them', field='target')

    def write_script(self, settings, job, run_dir, port, resume_from, mode):
        opts = self.options(job['request'])
        gpus = int(opts['gpus_per_node'] or job['request']['gpus'])
        batch = launcher.batch(settings, job, run_dir, resume_from)
        env = launcher.job_env(settings, mode, list(range(gpus)), port, base={})
        env.pop('CUDA_VISIBLE_DEVICES', None) if mode == 'gpu' else None     # Slurm sets it per node
        spec = ScriptSpec(job_name=slurm_job_name(job), run_dir=str(run_dir), trainer_args=batch['trainer_args'],
                          nodes=job['request'].get('nodes', 1), gpus_per_node=gpus, mode=mode,
                          launcher=settings.launcher, deepspeed=settings.deepspeed_path, python=settings.python,
                          master_port=port, resume_from=resume_from, partition=opts['partition'],
                          account=opts['account'], qos=opts['qos'], time_limit=opts['time_limit'],
                          cpus_per_task=gpus if mode == 'cpu' else 0, extra_options=list(opts['sbatch_options']),
                          workdir=batch['workdir'], env=env, header=f'Written by ODEO Studio for job {job["id"]}')
        return write(spec)

    # ---- watching ----------------------------------------------------------------------------------------
    def refresh(self, jobs, force=False):
        """Read the Slurm jobs of these studio jobs (one squeue), at most every slurm_poll_s. False when Slurm
        could not be asked (the jobs are then left as they are)."""
        now = self.clock()
        if not force and self._read_at is not None and now - self._read_at < self.settings.slurm_poll_s:
            return self.error is None
        ids = [j.get('slurm_job_id') for j in jobs if j.get('slurm_job_id')]
        try:
            self._seen = self.cli.jobs(ids)
            self.error = None
        except SlurmError as e:
            if self.error != str(e):
                log.warning('cannot read Slurm jobs: %s', e)
            self.error = str(e)
        self._read_at = now
        return self.error is None

    def poll(self, job):
        return self._seen.get(str(job.get('slurm_job_id')))

    def active(self, sid):
        sj = self.cli.jobs([sid]).get(str(sid))
        return sj if sj and sj.active else None

    def signal(self, job, sig):
        sid = job.get('slurm_job_id')
        if sid:
            self.cli.cancel(sid, 'TERM' if sig == 'SIGTERM' else None)
            self._read_at = None        # look again at once
        return bool(sid)

    def cancel_orphans(self, job):
        """Slurm jobs submitted for this job whose id was never recorded (the studio stopped mid-submit)."""
        for sid in self.cli.by_name(slurm_job_name(job)):
            self.cli.cancel(sid)

    def offers(self):
        s = self.settings
        out = {'max_nodes': s.slurm_max_nodes, 'partition': s.slurm_partition, 'account': s.slurm_account,
               'qos': s.slurm_qos, 'time_limit': s.slurm_time_limit, 'gpus_per_node': s.slurm_gpus_per_node,
               'partitions': [], 'error': None}
        try:
            out['partitions'] = self.cli.partitions()
        except SlurmError as e:
            out['error'] = str(e)
        return out


class Targets:
    """The targets of this studio, by name; `compute_targets` says which ones tasks may choose."""

    def __init__(self, settings, inventory, slurm_cli=None):
        self.settings = settings
        self.local = LocalTarget(inventory)
        self.slurm = SlurmTarget(settings, slurm_cli)
        self.hosts = HostsTarget(settings)
        self.by_name = {t.name: t for t in (self.local, self.slurm, self.hosts)}

    def of(self, job):
        return self.by_name[target_of(job)]

    def check(self, request):
        """Refuse a request for a target this studio does not offer, or more nodes than it has."""
        name = target_of(request)
        if name not in self.settings.compute_targets:
            raise Invalid(f'target {name!r} is not offered here (compute_targets: '
                          f'{", ".join(self.settings.compute_targets)})', field='target')
        if name == 'local' and request.get('nodes', 1) != 1:
            raise Invalid('the local machine is one node; choose slurm or hosts for more', field='nodes')
        if name != 'local':
            self.by_name[name].check(request)

    def view(self):
        names = [n for n in self.settings.compute_targets if n in self.by_name]
        return {'default': 'local', 'targets': [{'name': n, 'offers': self.by_name[n].offers()} for n in names],
                'shared': shared_check(self.settings) if set(names) - {'local'} else []}


def main():
    """`python -m api.services.jobs.targets`: warn (start_api.sh) when a target off this machine is on and the
    folders every node must see are not on a network filesystem."""
    from ...settings import load_settings
    settings = load_settings()
    if set(settings.compute_targets) - {'local'}:
        for entry in shared_check(settings):
            print(f'==> shared with the nodes: {entry["path"]} ({entry["filesystem"]})'
                  + (f'\n    warning: {entry["warning"]}' if entry['warning'] else ''))


if __name__ == '__main__':
    main()
