#!/usr/bin/env bash
# Train on several nodes under Slurm without the studio: write an sbatch script for a run and submit it.
#
#   tools/slurm.sh --config my.toml --run-dir /shared/runs/my-lora --nodes 15 --gpus-per-node 8 \
#                  --partition gpu --time 24:00:00 [--dry-run] [-- extra train.py flags]
#
# The script starts one `deepspeed --no_ssh --node_rank $SLURM_NODEID` launcher per node with srun (rank 0's
# node is the rendezvous), asks Slurm for SIGUSR1 two minutes before the time limit (--signal=USR1@120) and
# may be requeued (--requeue). On SIGUSR1 or SIGTERM the trainer checkpoints and exits 75 ("requeue me"), and
# the script then calls `scontrol requeue`. Every start passes --resume_from_checkpoint once the run folder
# holds a checkpoint, so running this command again, or a requeue, continues the run. The run folder, the
# config, the datasets and the models must be on a filesystem every node mounts at the same path.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --config FILE        trainer config (required)
  --run-dir DIR        run folder, the same for every (re)submission (required)
  --nodes N            nodes (default 1)
  --gpus-per-node G    GPUs, i.e. ranks, per node (default 8)
  --cpus-per-node C    CPUs for each node's launcher and ranks (default: Slurm's)
  --partition P        Slurm partition            --account A   Slurm account
  --time T             time limit, e.g. 24:00:00 (default: the partition's)
  --job-name NAME      (default: the run folder's name)
  --signal-lead S      seconds before the time limit to ask for a checkpoint (default 120)
  --port P             rendezvous port (default 20000 + job id % 20000)
  --venv DIR           Python environment holding deepspeed (default: the repository's .venv)
  --dry-run            print the sbatch script; write and submit nothing
EOF
}

config="" run_dir="" nodes=1 gpus=8 cpus="" partition="" account="" time_limit="" job_name="" lead=120 port=""
venv="$REPO/.venv" dry_run=0 extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config="$2"; shift 2 ;;
        --run-dir) run_dir="$2"; shift 2 ;;
        --nodes) nodes="$2"; shift 2 ;;
        --gpus-per-node) gpus="$2"; shift 2 ;;
        --cpus-per-node) cpus="$2"; shift 2 ;;
        --partition) partition="$2"; shift 2 ;;
        --account) account="$2"; shift 2 ;;
        --time) time_limit="$2"; shift 2 ;;
        --job-name) job_name="$2"; shift 2 ;;
        --signal-lead) lead="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --venv) venv="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "tools/slurm.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$config" ] && [ -n "$run_dir" ] || { echo "tools/slurm.sh: --config and --run-dir are required" >&2; exit 2; }
[ -f "$config" ] || { echo "tools/slurm.sh: config $config not found" >&2; exit 2; }
for n in "$nodes" "$gpus" "$lead"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "tools/slurm.sh: '$n' is not a positive whole number" >&2; exit 2; }
done
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
case "$run_dir" in /*) ;; *) run_dir="$PWD/$run_dir" ;; esac
job_name="${job_name:-$(basename "$run_dir")}"

script() {
    echo '#!/usr/bin/env bash'
    echo "#SBATCH --job-name=$job_name"
    echo "#SBATCH --nodes=$nodes"
    echo '#SBATCH --ntasks-per-node=1'
    echo "#SBATCH --gpus-per-node=$gpus"
    [ -n "$cpus" ] && echo "#SBATCH --cpus-per-task=$cpus"
    [ -n "$partition" ] && echo "#SBATCH --partition=$partition"
    [ -n "$account" ] && echo "#SBATCH --account=$account"
    [ -n "$time_limit" ] && echo "#SBATCH --time=$time_limit"
    echo "#SBATCH --signal=USR1@$lead"
    echo '#SBATCH --requeue'
    echo '#SBATCH --open-mode=append'
    echo "#SBATCH --output=$run_dir/slurm-%j.out"
    echo '# Written by tools/slurm.sh. Submitting it again, or a requeue, continues from the newest checkpoint.'
    echo 'set -uo pipefail'
    printf 'cd %q\n' "$REPO"
    printf 'RUN_DIR=%q\nCONFIG=%q\nDEEPSPEED=%q\n' "$run_dir" "$config" "$venv/bin/deepspeed"
    if [ ${#extra[@]} -gt 0 ]; then printf 'EXTRA=(%s)\n' "$(printf '%q ' "${extra[@]}")"; else echo 'EXTRA=()'; fi
    cat <<EOF
mkdir -p "\$RUN_DIR"
HOSTS=\$(scontrol show hostnames "\$SLURM_JOB_NODELIST")
MASTER_ADDR=\$(echo "\$HOSTS" | head -n 1)
MASTER_PORT=${port:-\$((20000 + SLURM_JOB_ID % 20000))}
HOSTFILE="\$RUN_DIR/hostfile.\$SLURM_JOB_ID"
echo "\$HOSTS" | sed 's/\$/ slots=$gpus/' > "\$HOSTFILE"
RESUME=()
if compgen -G "\$RUN_DIR/checkpoints/*/trainer_state.json" > /dev/null; then
    RESUME=(--resume_from_checkpoint)
fi
echo "job \$SLURM_JOB_ID: $nodes node(s) x $gpus GPU(s), rendezvous \$MASTER_ADDR:\$MASTER_PORT \${RESUME[*]}"
# One launcher per node. The signals are for the ranks (train.py handles them); the launchers ignore them so
# that they wait for the ranks' checkpoint and pass on their exit status.
srun --nodes=$nodes --ntasks-per-node=1 --kill-on-bad-exit=0 \\
    bash -c 'trap "" USR1 TERM; exec "\$1" --hostfile "\$2" --no_ssh --node_rank "\$SLURM_NODEID" "\${@:3}"' launcher \\
    "\$DEEPSPEED" "\$HOSTFILE" --master_addr "\$MASTER_ADDR" --master_port "\$MASTER_PORT" \\
    train.py --deepspeed --config "\$CONFIG" --run_dir "\$RUN_DIR" "\${RESUME[@]}" "\${EXTRA[@]}"
status=\$?
rm -f "\$HOSTFILE"
if [ "\$status" -eq 75 ]; then
    echo "job \$SLURM_JOB_ID: checkpoint written after a preemption signal; requeueing"
    scontrol requeue "\$SLURM_JOB_ID"
fi
exit "\$status"
EOF
}

if [ "$dry_run" = 1 ]; then
    script
    exit 0
fi
mkdir -p "$run_dir"
file="$run_dir/slurm.sbatch"
script > "$file.tmp" && mv "$file.tmp" "$file"
echo "wrote $file"
sbatch "$file"
