#!/usr/bin/env bash
# Set up the environment (idempotent) and run the whole test suite on this machine's CPU.
# Extra arguments go to pytest, e.g. ./run_tests.sh tests/trainer/test_config.py -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
tools/setup.sh --test
export HF_HUB_OFFLINE=1
export TORCH_EXTENSIONS_DIR="$ROOT/build/torch_extensions"
exec .venv/bin/python -m pytest "$@"
