#!/bin/bash
# GPU machine: install carried wheels (.whl), build, serve MODEL_DIR (default .dev/models/qwen3-8b:
# config.json + tokenizer, dummy weights), run bench_serving against it, stop it; logs in $OUT
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LIGHTLLM_CUDA=1 LIGHTLLM_CUDA_ARCHS=90a
timeout 200 python setup.py build_ext --inplace -j 16 --build-temp build/cuda-ext -q > $OUT/build.log 2>&1 || { tail -20 $OUT/build.log; exit 1; }
python -c "import fastapi, uvicorn, lightllm._C as c; print('deps ok, WITH_CUDA', c.WITH_CUDA)"
python -m lightllm.server --model-dir ${MODEL_DIR:-.dev/models/qwen3-8b} --load-format dummy --device cuda --max-model-len 4096 \
    --running-max-req-size 128 --max-total-token-num 300000 --port 8011 > $OUT/server.log 2>&1 &
SP=$!
for i in $(seq 1 240); do curl -sf http://127.0.0.1:8011/health > /dev/null && break; sleep 1; done
echo "server ready after ${i}s"; tail -3 $OUT/server.log
timeout 150 python benchmarks/bench_serving.py --base-url http://127.0.0.1:8011/v1 \
    ${BENCH_ARGS:---num-prompts 256 --max-concurrency 64 --input-len 512 --output-len 128} \
    --ignore-eos --tokenizer-dir ${MODEL_DIR:-.dev/models/qwen3-8b} --seed 0 \
    --result-json $OUT/serving.json 2>&1 | tee $OUT/bench_serving.log | tail -32
curl -s http://127.0.0.1:8011/metrics | grep -E "^lightllm_(kv|running|queue|prefix|gpu)" | head
kill -TERM $SP; wait $SP; echo "server exit $?"; ls /dev/shm | grep -c lightllm || true
