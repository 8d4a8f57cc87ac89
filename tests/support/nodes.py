"""Several 'nodes' on one machine: one deepspeed launcher per node (`--no_ssh --node_rank R`, as Slurm's
srun starts them) sharing a hostfile, or one launcher reaching every host over ssh (pdsh) through an
sshd the test starts on a loopback port."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil

from tests.support.studio import free_port
from tests.support.trainer import DEEPSPEED, ROOT, trainer_env

HOSTS = ('localhost', '127.0.0.1')      # two names of this machine: two nodes of one slot each


def write_hostfile(folder, hosts=HOSTS):
    path = Path(folder) / 'hostfile'
    path.write_text(''.join(f'{h} slots=1\n' for h in hosts))
    return path


def node_env(**extra):
    """Short collective timeout, so a rank whose peer died fails instead of waiting 30 minutes."""
    return dict(trainer_env(), ODEO_COLLECTIVE_TIMEOUT='60', **extra)


class Nodes:
    """The launchers of one multi-node run; each in its own process group (a node to kill alone)."""

    def __init__(self, config, run_dir, hostfile, nodes=2, extra=(), env=None, wrap=None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.procs = []
        for node in range(nodes):
            cmd = [DEEPSPEED, '--hostfile', str(hostfile), '--no_ssh', '--node_rank', str(node), '--num_gpus', '1',
                   '--master_addr', '127.0.0.1', '--master_port', str(self.port), 'train.py', '--deepspeed',
                   '--config', str(config), '--run_dir', str(self.run_dir), *extra]
            if wrap is not None:
                cmd = wrap(node, cmd)
            log = open(self.log_path(node), 'a')
            self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env or node_env(), stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def log_path(self, node):
        return self.run_dir.parent / f'{self.run_dir.name}.node{node}.log'

    def log(self, node=0):
        return self.log_path(node).read_text(errors='replace')

    def ranks(self, node):
        """The train.py processes a node's launcher started."""
        try:
            children = psutil.Process(self.procs[node].pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if any(a.startswith('--local_rank=') for a in p.cmdline())]   # not the launcher

    def signal_ranks(self, node, sig):
        for p in self.ranks(node):
            p.send_signal(sig)

    def kill_node(self, node):
        os.killpg(self.procs[node].pid, signal.SIGKILL)
        self.procs[node].wait()

    def wait(self, timeout):
        deadline = time.time() + timeout
        try:
            for p in self.procs:
                p.wait(timeout=max(1, deadline - time.time()))
        finally:
            self.kill()
        return [p.returncode for p in self.procs]

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


# ------------------------------------------------------------------------------------------------
# sshd on a loopback port, with keys made for the test
# ------------------------------------------------------------------------------------------------

def ssh_unavailable():
    """Why an sshd cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return 'sshd needs root to log in as this user with a test key'
    for tool in ('/usr/sbin/sshd', shutil.which('ssh-keygen'), shutil.which('pdsh')):
        if not tool or not os.path.exists(tool):
            return 'openssh-server and pdsh are not installed (apt-get install -y openssh-server pdsh)'
    return None


class SshServer:
    """sshd -D -f <config> as a child, accepting one client key; `bin` holds an `ssh` that uses it (first on
    PATH for the deepspeed runner and pdsh), so nothing in ~/.ssh is read or changed."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        f = self.folder
        for key in ('host_key', 'client_key'):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(f / key)], check=True)
        shutil.copy(f / 'client_key.pub', f / 'authorized_keys')
        (f / 'sshd_config').write_text(
            f'Port {self.port}\nListenAddress 127.0.0.1\nHostKey {f}/host_key\nPidFile {f}/sshd.pid\n'
            f'AuthorizedKeysFile {f}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n'
            'KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAcceptEnv *\n')
        (f / 'ssh_config').write_text(
            f'Host *\n  Port {self.port}\n  IdentityFile {f}/client_key\n  IdentitiesOnly yes\n  BatchMode yes\n'
            '  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n')
        self.bin = f / 'bin'
        self.bin.mkdir(exist_ok=True)
        wrapper = self.bin / 'ssh'
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {f}/ssh_config "$@"\n')
        wrapper.chmod(0o755)
        Path('/run/sshd').mkdir(exist_ok=True)          # privilege separation directory
        self.log = open(f / 'sshd.log', 'w')
        self.proc = subprocess.Popen(['/usr/sbin/sshd', '-D', '-e', '-f', str(f / 'sshd_config')],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if subprocess.run([str(self.bin / 'ssh'), '127.0.0.1', 'true'], capture_output=True).returncode == 0:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()
