#!/usr/bin/env bash
# The project's checks that need a GPU, in one go (a few minutes on one CUDA GPU):
#   1. the CUDA tests (tangent model vs torch.func.jvp on CUDA, both tangent paths, device
#      resolution, the benchmarks' device handling);
#   2. python -m bench.cost --quick --device cuda --json
#   3. python -m bench.tangent_cost --quick --device cuda --json
# Run from the repository root:  bash bench/gpu_check.sh
# Results go to $OUT when set (a device machine's return folder), else bench/results/gpu/;
# the exit status is that of the first step that failed (0 when all passed).
set -uo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
DEST="${OUT:-bench/results/gpu}"
mkdir -p "$DEST"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA device; nothing to check here" >&2
    exit 1
fi
nvidia-smi > "$DEST/nvidia-smi.txt" 2>&1 || true

status=0
step() {
    local name="$1"
    shift
    local start=$SECONDS
    echo "== $name" >&2
    "$@" > "$DEST/$name.out" 2> "$DEST/$name.err"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s" >&2
    tail -n 5 "$DEST/$name.err" >&2
    if [[ $rc -ne 0 && $status -eq 0 ]]; then status=$rc; fi
}

step cuda_tests "$PY" -m pytest -q -p no:cacheprovider -k "cuda or device" \
    tests/common/tangent tests/common/test_device_files_hashing.py tests/bench
step cost "$PY" -m bench.cost --quick --device cuda --json --out "$DEST"
step tangent_cost "$PY" -m bench.tangent_cost --quick --device cuda --json --out "$DEST"
cat "$DEST/cuda_tests.out" >&2
echo "gpu_check: results in $DEST, exit $status" >&2
exit $status
