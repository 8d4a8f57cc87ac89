"""The Slurm batch script that runs train.py on N nodes: one writer for the studio (which puts it into a run
folder as `slurm.sbatch`) and for a shell (`tools/slurm.sh`, or `python -m utils.slurm_script ...`).

    text = render(ScriptSpec(job_name='odeo-j1', run_dir='/data/runs/t/j1', nodes=2, gpus_per_node=8,
                             trainer_args=['train.py', '--deepspeed', '--config', '/data/runs/t/j1/config.toml',
                                           '--run_dir', '/data/runs/t/j1']))

The script asks Slurm for `nodes` nodes with one task each, checks that every node sees the run folder (each
touches `<run>/nodes/<node name>`; a node that cannot fails the start with a `failed` status naming it, exit 2),
writes a DeepSpeed hostfile of the allocation and starts one launcher per node with `srun`:

    deepspeed --hostfile <run>/hostfile --no_ssh --node_rank $SLURM_NODEID --master_addr <first node>
              --master_port <port> --num_nodes N --num_gpus G train.py ... [--resume_from_checkpoint <run>]

Restarts: once the run folder holds a complete checkpoint every start resumes from the newest one, so a
requeue, or submitting the same script again, continues the run. `--requeue` lets Slurm rerun it after a
preemption or a node failure. `--signal=USR1@<lead>` asks for SIGUSR1 that many seconds before the time limit:
the ranks checkpoint, rank 0 leaves `<run>/preempted` and they exit 75 (utils.cluster.REQUEUE_EXIT); the
script then calls `scontrol requeue` itself, since Slurm does not requeue a job that reached its limit, unless
the studio asked the run to stop (`<run>/control/stop` or `save_quit` is there). The launchers ignore SIGUSR1
and SIGTERM (the ranks handle them; a launcher that died of one would take its ranks with it before they
checkpoint). A cancel (`scancel`) ends the batch shell too, so it is never requeued. Log: `<run>/log.txt`.
Values that go into `#SBATCH` lines (job name, run folder, working folder, options) cannot hold whitespace or
quotes: sbatch would split them; render() refuses them by name.
"""

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from utils.cluster import PREEMPTED_MARKER, REQUEUE_EXIT


@dataclass
class ScriptSpec:
    job_name: str
    run_dir: str
    trainer_args: list                  # train.py and its arguments (without --resume_from_checkpoint)
    nodes: int = 1
    gpus_per_node: int = 1              # GPUs (GPU mode) or CPU ranks (cpu mode) per node
    mode: str = 'gpu'                   # gpu: --gpus-per-node; cpu: CPU ranks, DS_ACCELERATOR=cpu
    launcher: str = 'deepspeed'         # deepspeed | python (one process, no launcher)
    deepspeed: str = 'deepspeed'        # the launcher executable
    python: str = 'python3'
    master_port: int = 29500            # 0: 20000 + job id % 20000, a port per job without asking anyone
    resume_from: str | None = None      # --resume_from_checkpoint while the run has no checkpoint of its own
    signal_lead: int = 120              # seconds before the time limit to ask for a checkpoint (0: no signal)
    partition: str = ''
    account: str = ''
    qos: str = ''
    time_limit: str = ''                # sbatch --time, e.g. 2-00:00:00
    cpus_per_task: int = 0              # 0: Slurm's default
    extra_options: list = field(default_factory=list)   # more sbatch options, e.g. ['--constraint=a100']
    workdir: str = ''                   # where the launcher starts (the repository)
    env: dict = field(default_factory=dict)             # exported before srun
    header: str = ''                    # a comment line under the shebang


def _q(value):
    return shlex.quote(str(value))


def check_spec(spec):
    """Refuse what an #SBATCH line or the script's comment cannot carry, naming the field and the value."""
    for name in ('run_dir', 'workdir', 'job_name', 'partition', 'account', 'qos', 'time_limit'):
        value = str(getattr(spec, name) or '')
        if any(c.isspace() or c in '"\'' for c in value):
            raise ValueError(f'{name} {value!r}: Slurm batch options cannot hold spaces or quotes')
    for opt in spec.extra_options:
        if any(c in '\n\r' for c in str(opt)):
            raise ValueError(f'sbatch option {opt!r}: one option per line')
    if any(c in '\n\r' for c in spec.header):
        raise ValueError(f'header {spec.header!r}: one line')


def sbatch_options(spec):
    opts = [f'--job-name={spec.job_name}', f'--nodes={spec.nodes}', '--ntasks-per-node=1',
            f'--output={spec.run_dir}/log.txt', '--open-mode=append', '--requeue']
    if spec.signal_lead:
        opts.append(f'--signal=USR1@{int(spec.signal_lead)}')
    if spec.mode == 'gpu' and spec.gpus_per_node:
        opts.append(f'--gpus-per-node={spec.gpus_per_node}')
    if spec.cpus_per_task:
        opts.append(f'--cpus-per-task={spec.cpus_per_task}')
    for name, value in (('partition', spec.partition), ('account', spec.account), ('qos', spec.qos),
                        ('time', spec.time_limit), ('chdir', spec.workdir)):
        if value:
            opts.append(f'--{name}={value}')
    return opts + [str(o) for o in spec.extra_options]


def node_command(spec):
    """The command each node runs; $SLURM_NODEID and $MASTER_ADDR are expanded on that node."""
    args = ' '.join(_q(a) for a in spec.trainer_args)
    if spec.launcher == 'python':
        return f'exec {_q(spec.python)} {args} "$@"'
    return (f'trap "" USR1 TERM; exec {_q(spec.deepspeed)} --hostfile "$RUN/hostfile" --no_ssh --node_rank "$SLURM_NODEID" '
            f'--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --num_nodes {int(spec.nodes)} '
            f'--num_gpus {int(spec.gpus_per_node)} {args} "$@"')


def render(spec: ScriptSpec) -> str:
    check_spec(spec)
    lines = ['#!/bin/bash']
    if spec.header:
        lines.append(f'# {spec.header}')
    lines.append(f'# Submit again by hand with: sbatch {_q(Path(spec.run_dir) / "slurm.sbatch")}')
    lines += [f'#SBATCH {o}' for o in sbatch_options(spec)]
    lines += ['set -uo pipefail', f'export RUN={_q(spec.run_dir)}']
    lines += [f'export {k}={_q(v)}' for k, v in sorted(spec.env.items())]
    resume = f'(--resume_from_checkpoint {_q(spec.resume_from)})' if spec.resume_from else '()'
    port = int(spec.master_port) or '$((20000 + SLURM_JOB_ID % 20000))'
    lines.append(f"""\
NODES=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
export MASTER_ADDR="${{NODES[0]}}" MASTER_PORT={port}
echo "=== $(date '+%Y-%m-%d %H:%M:%S') Slurm job $SLURM_JOB_ID (restart ${{SLURM_RESTART_COUNT:-0}}) on ${{NODES[*]}}"

json_text() {{ local s=${{1//\\\\/\\\\\\\\}}; printf '%s' "${{s//\\"/\\\\\\"}}"; }}
fail() {{   # fail <message>: a failed status for the studio, on stderr for a person, exit 2
    echo "$1" >&2
    printf '{{"time": %s, "type": "status", "state": "failed", "message": "%s"}}\\n' "$(date +%s.%N)" "$(json_text "$1")" >> "$RUN/events.jsonl"
    exit 2
}}

# Every node must see the run folder (the data root on a shared filesystem, same path everywhere).
mkdir -p "$RUN/nodes" && rm -f "$RUN/nodes/"*
srun --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c 'touch "$1/nodes/$SLURMD_NODENAME"' odeo "$RUN" 2>&1
missing=()
for n in "${{NODES[@]}}"; do [ -e "$RUN/nodes/$n" ] || missing+=("$n"); done
SHARED="the data root and the model folders must be on a filesystem every node mounts at the same path"
[ ${{#missing[@]}} -eq 0 ] || fail "node(s) ${{missing[*]}} cannot see the run folder $RUN: $SHARED"

: > "$RUN/hostfile.tmp" && for n in "${{NODES[@]}}"; do echo "$n slots={int(spec.gpus_per_node)}" >> "$RUN/hostfile.tmp"; done
mv "$RUN/hostfile.tmp" "$RUN/hostfile"

RESUME={resume}
if compgen -G "$RUN/checkpoints/*/trainer_state.json" > /dev/null; then
    RESUME=(--resume_from_checkpoint "$RUN")   # the newest complete checkpoint of this run
fi
rm -f "$RUN/{PREEMPTED_MARKER}"
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c {_q(node_command(spec))} odeo "${{RESUME[@]}}"
status=$?
rm -f "$RUN/hostfile"
# Preempted: the trainer checkpointed and left <run>/{PREEMPTED_MARKER} (srun's own status may be 128+signal once
# it has ended the other nodes' tasks). A stop the studio asked for (control/stop, control/save_quit) is not requeued.
if [ -e "$RUN/{PREEMPTED_MARKER}" ] || [ "$status" -eq {REQUEUE_EXIT} ]; then
    if [ -e "$RUN/control/stop" ] || [ -e "$RUN/control/save_quit" ]; then
        echo "=== Slurm job $SLURM_JOB_ID: preempted while a stop was asked for; not requeued"
    else
        echo "=== Slurm job $SLURM_JOB_ID: checkpoint written after a preemption signal; requeueing"
        scontrol requeue "$SLURM_JOB_ID"
    fi
    exit {REQUEUE_EXIT}
fi
exit "$status"
""")
    return '\n'.join(lines)


def write(spec: ScriptSpec, path=None) -> Path:
    """Write the script (default `<run>/slurm.sbatch`), executable, by temp file and rename."""
    path = Path(path or Path(spec.run_dir) / 'slurm.sbatch')
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(render(spec), encoding='utf-8')
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description='Write a Slurm batch script that trains on N nodes '
                                            '(train.py and its arguments after --).')
    p.add_argument('--run_dir', required=True)
    p.add_argument('--job_name', default='odeo-train')
    p.add_argument('--nodes', type=int, default=1)
    p.add_argument('--gpus_per_node', type=int, default=1)
    p.add_argument('--cpus_per_task', type=int, default=0, help="CPUs for each node's launcher and ranks")
    p.add_argument('--mode', choices=('gpu', 'cpu'), default='gpu')
    p.add_argument('--deepspeed', default='deepspeed')
    p.add_argument('--master_port', type=int, default=29500, help='0: 20000 + job id %% 20000')
    p.add_argument('--resume_from', default=None)
    p.add_argument('--signal_lead', type=int, default=120,
                   help='seconds before the time limit to ask for a checkpoint (0: none)')
    for name in ('partition', 'account', 'qos', 'time_limit', 'workdir', 'header'):
        p.add_argument(f'--{name}', default='')
    p.add_argument('--sbatch_option', action='append', default=[], help='another #SBATCH line (repeatable)')
    p.add_argument('--out', default=None, help='where to write it (default <run_dir>/slurm.sbatch; - prints it)')
    p.add_argument('trainer_args', nargs='+', help='train.py --deepspeed --config ... (after --)')
    a = p.parse_args(argv)
    for name in ('nodes', 'gpus_per_node'):
        if getattr(a, name) < 1:
            p.error(f'--{name} {getattr(a, name)}: must be a positive whole number')
    if min(a.cpus_per_task, a.signal_lead, a.master_port) < 0:
        p.error('--cpus_per_task, --signal_lead and --master_port cannot be negative')
    spec = ScriptSpec(job_name=a.job_name, run_dir=str(Path(a.run_dir).resolve()), trainer_args=a.trainer_args,
                      nodes=a.nodes, gpus_per_node=a.gpus_per_node, mode=a.mode, deepspeed=a.deepspeed,
                      master_port=a.master_port, resume_from=a.resume_from, signal_lead=a.signal_lead,
                      partition=a.partition, account=a.account, qos=a.qos, time_limit=a.time_limit,
                      cpus_per_task=a.cpus_per_task, workdir=a.workdir, header=a.header, extra_options=a.sbatch_option,
                      env={'DS_ACCELERATOR': 'cpu', 'OMP_NUM_THREADS': '1'} if a.mode == 'cpu' else {})
    try:
        check_spec(spec)
    except ValueError as e:
        p.error(str(e))
    if a.out == '-':
        sys.stdout.write(render(spec))
    else:
        Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
        print(write(spec, a.out))


if __name__ == '__main__':
    main()
