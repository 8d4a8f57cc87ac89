#!/usr/bin/env bash
# Set up the environment, make the tiny demo model and dataset if absent, and start ODEO Studio.
#
#   ./start_api.sh [--host H] [--port P] [--data DIR] [--token T]
#   ./start_api.sh [--data DIR] --create-admin NAME    make an admin (password asked twice, or ODEO_ADMIN_PASSWORD)
#
# The same settings come from ODEO_HOST, ODEO_PORT, ODEO_DATA, ODEO_TOKEN (flags win). The studio
# listens on 127.0.0.1:8080 by default; another address needs an access token or auth = 'accounts'.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

HOST="${ODEO_HOST:-127.0.0.1}"
PORT="${ODEO_PORT:-8080}"
DATA="${ODEO_DATA:-$ROOT/data}"
TOKEN="${ODEO_TOKEN:-}"
ADMIN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --host) HOST="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --data) DATA="$2"; shift 2 ;;
        --token) TOKEN="$2"; shift 2 ;;
        --create-admin) ADMIN="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

tools/setup.sh
PY="$ROOT/.venv/bin/python"
if [ -n "$ADMIN" ]; then
    exec "$PY" -m api --data "$DATA" --create-admin "$ADMIN"
fi
export TORCH_EXTENSIONS_DIR="$ROOT/build/torch_extensions"
mkdir -p "$DATA/models" "$DATA/datasets"

make_demo() {   # make_demo <script> <output folder> <what>
    if [ -e "$2" ]; then
        return
    fi
    if [ -f "$1" ]; then
        echo "==> making the $3 in $2"
        "$PY" "$1" --out "$2"
    else
        echo "==> $1 is not here yet; skipping the $3"
    fi
}
make_demo tools/make_demo_model.py "$DATA/models/tiny" "tiny demo model"
make_demo tools/make_demo_dataset.py "$DATA/datasets/demo" "demo dataset"

# Training on Slurm or ssh hosts (compute_targets): the data root and the model folders must be on a shared
# filesystem every node mounts at the same path. Say what is shared and warn when it looks local.
ODEO_DATA_ROOT="$DATA" "$PY" -W ignore::RuntimeWarning -m api.services.jobs.targets || true

echo "==> ODEO Studio: http://$HOST:$PORT/"
ARGS=(--host "$HOST" --port "$PORT" --data "$DATA")
if [ -n "$TOKEN" ]; then
    export ODEO_TOKEN="$TOKEN"      # through the environment, so it does not show in `ps`
fi
exec "$PY" -m api "${ARGS[@]}"
