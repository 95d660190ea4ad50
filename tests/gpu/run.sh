#!/bin/bash
# tests/gpu/run.sh — one call on a GPU machine: the CUDA extension build and import, then every
# GPU test (ops, attention, whole models).  Each stage runs under `timeout`; logs go to $OUT;
# a short summary table is printed last.  Needs numpy/pytest (no installs).  Under 8 minutes.
#   LIGHTLLM_CUDA_ARCHS (default 90a)   RUN_STAGES (default "info build import ops")
#   GPU_TESTS (default tests/gpu)       OPS_LIMIT_S (default 330)
set -u
cd "$(dirname "$0")/../.."
LOG=${OUT:-/tmp/lightllm-gpu-logs}
mkdir -p "$LOG"
export LIGHTLLM_CUDA=1 LIGHTLLM_CUDA_ARCHS=${LIGHTLLM_CUDA_ARCHS:-90a}
export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
STAGES=${RUN_STAGES:-info build import ops}
SUMMARY=()

stage() { # name limit_s command...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "=== $name: $*" | tee -a "$LOG/run.log"
    timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$LOG/$name.log"
    SUMMARY+=("$(printf '%-8s rc=%-4s %4ss  %s' "$name" "$rc" "$((SECONDS - t0))" "$LOG/$name.log")")
    return $rc
}

for s in $STAGES; do
    case $s in
    info) stage info 60 bash -c 'nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv; nvcc --version | tail -1; git log --oneline -1 2>/dev/null || true' ;;
    ops) stage ops "${OPS_LIMIT_S:-330}" python -m pytest -q ${GPU_TESTS:-tests/gpu} -m gpu -rA -s -p no:cacheprovider ;;
    build) stage build 240 python setup.py build_ext --inplace -j 8 --build-temp build/cuda-ext ;;
    import) stage import 60 python -c 'import lightllm._C as c; print("WITH_CUDA", c.WITH_CUDA); assert c.WITH_CUDA == 1' ;;
    *) echo "unknown stage $s" ;;
    esac
done

echo
echo "=== per-op worst error (tests/gpu/test_ops.c) ==="
if [ -f "$LOG/ops.log" ]; then
    printf "%-22s %6s %6s %11s %7s\n" op checks fails worst_err tol
    awk '$NF == "ok" || $NF == "FAIL" {
             op = $1; sub(/^\.+/, "", op); sub(/^err=/, "", $(NF-2)); e = $(NF-2) + 0; t = $(NF-1); sub(/^tol=/, "", t)
             n[op]++; if ($NF == "FAIL") f[op]++; if (!(op in w) || e > w[op]) w[op] = e; tol[op] = t
         }
         END { for (op in n) printf "%-22s %6d %6d %11.3e %7s\n", op, n[op], f[op] + 0, w[op], tol[op] }' "$LOG/ops.log" | sort
    grep -E "[0-9]+ (passed|failed|skipped|errors?)( |,|$)" "$LOG/ops.log" | tail -1
fi
echo
echo "=== stages ==="
printf '%s\n' "${SUMMARY[@]}"
