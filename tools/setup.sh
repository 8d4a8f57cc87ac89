#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
#
#   tools/setup.sh          runtime dependencies (what ./start_api.sh needs)
#   tools/setup.sh --test   runtime + test dependencies (what ./run_tests.sh needs)
#
# Idempotent: a stamp file records a hash of everything that decides the install, and a second run
# with nothing changed returns in well under a second. Honours the usual pip variables for mirrors
# (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL) and ODEO_NPM_REGISTRY for the browser assets.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WITH_TEST=0
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST=1 ;;
        *) echo "usage: tools/setup.sh [--test]" >&2; exit 2 ;;
    esac
done

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
DEEPSPEED_VERSION="0.19.8"
# DeepSpeed JIT-builds CPU ops on first use; keep them inside the repository's ignored build dir.
export TORCH_EXTENSIONS_DIR="$ROOT/build/torch_extensions"

stamp_inputs() {
    cat constraints.txt requirements.txt tools/setup.sh tools/vendor_assets.py
    echo "deepspeed==$DEEPSPEED_VERSION"
    if [ "$WITH_TEST" = 1 ]; then cat requirements-test.txt requirements-test-nodeps.txt; fi
}
WANT="$(stamp_inputs | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.odeo-setup-$( [ "$WITH_TEST" = 1 ] && echo test || echo runtime )"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
        && "$VENV/bin/python" tools/vendor_assets.py --check >/dev/null 2>&1; then
    exit 0
fi

echo "==> setting up $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip==25.3"
# 1. torch first, pinned, so nothing below can pull a different (multi-GB) build.
"${PIP[@]}" install -q -c constraints.txt "torch==2.13.0"
# 2. everything else, under the same constraint.
"${PIP[@]}" install -q -c constraints.txt -r requirements.txt
# 3. DeepSpeed builds from an sdist against the torch installed above; no ops prebuilt.
if ! "$VENV/bin/python" -c "import deepspeed, sys; sys.exit(deepspeed.__version__ != '$DEEPSPEED_VERSION')" 2>/dev/null; then
    DS_BUILD_OPS=0 "${PIP[@]}" install -q --no-build-isolation -c constraints.txt "deepspeed==$DEEPSPEED_VERSION"
fi
# DeepSpeed's CPU accelerator JIT-builds its shared-memory all-reduce op (deepspeed_shm_comm) the first time
# a CPU job calls init_distributed; build it once here, into the folder the studio gives its jobs
# (TORCH_EXTENSIONS_DIR, as run_tests.sh and start_api.sh set it), so no job spends its start-up compiling.
# About a minute; a failure only means the first CPU job builds it.
DS_ACCELERATOR=cpu TORCH_EXTENSIONS_DIR="$PWD/build/torch_extensions" "$VENV/bin/python" -c \
    "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()" >/dev/null 2>&1 \
    || echo "note: DeepSpeed's CPU op was not built now; the first CPU job builds it"
if [ "$WITH_TEST" = 1 ]; then
    "${PIP[@]}" install -q -c constraints.txt -r requirements-test.txt
    # Packages whose declared requirements we do not want (the official Wan code pulls flash-attn,
    # opencv and an API client): installed alone, still under the torch constraint.
    "${PIP[@]}" install -q --no-deps -c constraints.txt -r requirements-test-nodeps.txt
fi
# 4. browser assets (charting library) served by the studio itself, never from a CDN.
"$VENV/bin/python" tools/vendor_assets.py

echo "$WANT" > "$STAMP"
echo "==> environment ready"
