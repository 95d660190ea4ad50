#!/bin/bash
# GPU machine: install carried wheels (.whl), build, then for each mode in MODES (default
# "overlap serial": the backend's two folding threads, then --disable-overlap) serve MODEL_DIR
# (default .dev/models/qwen3-8b: config.json + tokenizer, dummy weights), run bench_serving
# against it (BENCH_ARGS), read /metrics (GPU idle fraction) and stop it.  SERVER_ARGS are added
# to every server; a mode may repeat (runs are numbered); TAG prefixes the files of this call.
# Logs and per-run JSON in $OUT; a table of the runs last.
set -u
OUT=${OUT:-/tmp/serve-bench}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LIGHTLLM_CUDA=1 LIGHTLLM_CUDA_ARCHS=90a
timeout 200 python setup.py build_ext --inplace -j 16 --build-temp build/cuda-ext -q > $OUT/build.log 2>&1 || { tail -20 $OUT/build.log; exit 1; }
python -c "import fastapi, uvicorn, lightllm._C as c; print('deps ok, WITH_CUDA', c.WITH_CUDA)"
MODEL=${MODEL_DIR:-.dev/models/qwen3-8b}
RUNS=()
n=0
for mode in ${MODES:-overlap serial}; do
    n=$((n + 1)); run="${TAG:-}$n-$mode"; RUNS+=("$run")
    extra=""; [ "$mode" = serial ] && extra="--disable-overlap"
    python -m lightllm.server --model-dir $MODEL --load-format dummy --device cuda --max-model-len 4096 \
        --running-max-req-size 128 --max-total-token-num 300000 --port 8011 ${SERVER_ARGS:-} $extra > $OUT/server-$run.log 2>&1 &
    SP=$!
    for i in $(seq 1 240); do curl -sf http://127.0.0.1:8011/health > /dev/null && break; sleep 1; done
    echo "== $run: server ready after ${i}s"
    timeout ${BENCH_LIMIT_S:-150} python benchmarks/bench_serving.py --base-url http://127.0.0.1:8011/v1 \
        ${BENCH_ARGS:---num-prompts 256 --max-concurrency 64 --input-len 512 --output-len 128} \
        --ignore-eos --tokenizer-dir $MODEL --seed 0 --result-json $OUT/serving-$run.json > $OUT/bench-$run.log 2>&1
    tail -22 $OUT/bench-$run.log
    curl -s http://127.0.0.1:8011/metrics > $OUT/metrics-$run.txt
    grep -E "^lightllm_(kv|running|queue|prefix|gpu|num_pre)" $OUT/metrics-$run.txt
    kill -TERM $SP; wait $SP; echo "server exit $?; shm segments left: $(ls /dev/shm | grep -c lightllm)"
done
echo
printf "%-16s %10s %8s %10s %10s %10s %9s\n" run out_tok/s req/s ttft_med tpot_med itl_med gpu_idle
for run in "${RUNS[@]}"; do
    python - "$OUT/serving-$run.json" "$OUT/metrics-$run.txt" "$run" <<'PY'
import json, re, sys
try:
    s = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print(f"{sys.argv[3]:<16} (no result)"); sys.exit()
m = re.search(r"^lightllm_gpu_idle_fraction (\S+)$", open(sys.argv[2]).read(), re.M)
print(f"{sys.argv[3]:<16} {s['output_throughput']:10.1f} {s['request_throughput']:8.2f} {s['ttft_ms']['median']:10.1f} "
      f"{s['tpot_ms']['median']:10.2f} {s['itl_ms']['median']:10.2f} {float(m.group(1)) if m else float('nan'):9.3f}")
PY
done
