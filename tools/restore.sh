#!/usr/bin/env bash
# tools/restore.sh BACKUP [--into DIR] [--force] [--check] [--json]
# Restore a studio snapshot into DIR (default: the data root) and verify every file against the
# snapshot's manifest (sha256). See api/services/backups/restore.py; exit 0 ok, 1 differences, 2 refused.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m api.services.backups.restore "$@"
