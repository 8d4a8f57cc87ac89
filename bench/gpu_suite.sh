#!/usr/bin/env bash
# The GPU measurements in one call, on a machine with one H100 / H200 that has torch and nothing else
# (see docs/performance.md, "GPU suite"): wheels for the rest are expected in .whl/ at the repository root.
#
#   bench/gpu_suite.sh              # on the GPU machine, from the repository root; under 8 minutes
#   bench/gpu_suite.sh --dry-run    # tiny sizes on the CPU with this checkout's .venv: the Python parts run end to end
#
# Results: one JSON (and a log) per measurement under $OUT if set, else bench/results/:
#   step_1.3b   our LoRA step, Wan2.1 1.3B architecture, 480x832x81: s/step, peak memory, MFU against
#               the bf16 matmul peak measured on this card in the same run
#   plain_1.3b  the same step in plain PyTorch (diffusers transformer, AdamW) on the same inputs
#   swap_14b    Wan2.1 14B architecture, 512x512x81, blocks_to_swap = 32, float8, unsloth, capped at 24 GiB
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; fi
results="${OUT:-bench/results}"
mkdir -p "$results"

if [[ $dry == 1 ]]; then
    py="${PYTHON:-.venv/bin/python}"
    size=(--smoke)
else
    py="${PYTHON:-python3}"
    size=()
    if compgen -G ".whl/*.whl" > /dev/null; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "no wheels in .whl/: using the packages this python already has" >&2
    fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

failed=0
run() {     # run NAME SECONDS ARGS...: one measurement, its own process (its own peak memory)
    local name=$1 seconds=$2
    shift 2
    echo "== $name" >&2
    if timeout "$seconds" "$py" bench/gpu_step.py "${size[@]}" "$@" --out "$results/$name.json" \
            > "$results/$name.log" 2>&1; then
        cat "$results/$name.json"
    else
        echo "$name failed (exit $?); last lines of $results/$name.log:" >&2
        tail -n 20 "$results/$name.log" >&2
        failed=1
    fi
}

run step_1.3b 150 --measure_peak
MASTER_PORT=29678 run plain_1.3b 120 --plain --measure_peak
MASTER_PORT=29679 run swap_14b 210 --model 14b --width 512 --height 512 --frames 81 --blocks_to_swap 32 \
    --float8 --checkpointing unsloth --memory_cap_gib 24 --steps 4 --warmup 1

"$py" - "$results" <<'PY'
import json, sys
from pathlib import Path
folder = Path(sys.argv[1])
got = {p.stem: json.loads(p.read_text()) for p in folder.glob('*.json') if p.stem != 'summary'}
summary = dict(got)
if 'step_1.3b' in got and 'plain_1.3b' in got:
    summary['plain_over_ours_s_per_step'] = round(got['plain_1.3b']['s_per_step'] / got['step_1.3b']['s_per_step'], 3)
(folder / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
print(f'summary: {folder / "summary.json"}')
PY
exit $failed
