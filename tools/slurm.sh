#!/usr/bin/env bash
# Train on several nodes under Slurm without the studio: write an sbatch script for a run and submit it.
#
#   tools/slurm.sh --config my.toml --run-dir /shared/runs/my-lora --nodes 15 --gpus-per-node 8 \
#                  --partition gpu --time 24:00:00 [--dry-run] [-- extra train.py flags]
#
# The script is the one the studio writes (utils/slurm_script.py): every node checks that it sees the run folder,
# then srun starts one `deepspeed --no_ssh --node_rank $SLURM_NODEID` launcher per node (the first node is the
# rendezvous). Slurm sends SIGUSR1 two minutes before the time limit (--signal=USR1@120); the ranks checkpoint and
# exit 75, and the script requeues itself (`scontrol requeue`). Every start resumes from the run folder's newest
# checkpoint, so running this command again, or a requeue, continues the run. The run folder, the config, the
# datasets and the models must be on a filesystem every node mounts at the same path. Log: <run-dir>/log.txt.
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
  --partition P        Slurm partition            --account A   Slurm account      --qos Q   Slurm QoS
  --time T             time limit, e.g. 24:00:00 (default: the partition's)
  --job-name NAME      (default: the run folder's name)
  --signal-lead S      seconds before the time limit to ask for a checkpoint (default 120)
  --port P             rendezvous port (default 20000 + job id % 20000)
  --venv DIR           Python environment holding deepspeed (default: the repository's .venv)
  --dry-run            print the sbatch script; write and submit nothing
EOF
}

config="" run_dir="" nodes=1 gpus=8 cpus=0 partition="" account="" qos="" time_limit="" job_name="" lead=120 port=0
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
        --qos) qos="$2"; shift 2 ;;
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

python="$REPO/.venv/bin/python"
[ -x "$python" ] || python=python3
args=(--run_dir "$run_dir" --job_name "$job_name" --nodes "$nodes" --gpus_per_node "$gpus" --cpus_per_task "$cpus"
      --partition "$partition" --account "$account" --qos "$qos" --time_limit "$time_limit" --signal_lead "$lead"
      --master_port "$port" --deepspeed "$venv/bin/deepspeed" --workdir "$REPO"
      --header "Written by tools/slurm.sh. Submitting it again, or a requeue, continues from the newest checkpoint.")
trainer=(train.py --deepspeed --config "$config" --run_dir "$run_dir" "${extra[@]}")
cd "$REPO"
if [ "$dry_run" = 1 ]; then
    exec "$python" -m utils.slurm_script "${args[@]}" --out - -- "${trainer[@]}"
fi
file="$("$python" -m utils.slurm_script "${args[@]}" -- "${trainer[@]}")"
echo "wrote $file"
sbatch "$file"
