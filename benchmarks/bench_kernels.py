"""Per-kernel achieved GB/s and TFLOP/s of the CUDA backend on a model's shapes, beside the
ceilings measured in the same run on the same card (device-to-device copy bandwidth, cuBLASLt
bf16 GEMM rate at 8192^3).

    python benchmarks/bench_kernels.py --config ../shared/models/llama3.1-8b/config.json

Builds benchmarks/bench_kernels.c against the backend (nvcc + gcc, as the GPU tests do) into
build/bench-kernels and runs it.  Linear layers run at token rows 1 … 256 through kernels_gemv
(rows <= 8) and cuBLASLt, weights rotated over copies larger than L2 so every call reads HBM.
Columns: median µs; GB/s = bytes moved (weights + activations / KV) / time, and its fraction of
the copy bandwidth; TFLOP/s and its fraction of the GEMM rate.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "gpu"))
from gpu_build import build_backend_program  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--timeout", type=float, default=300, help="seconds before the measuring program is stopped")
    args = ap.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    heads = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // heads
    dims = [cfg["hidden_size"], cfg["intermediate_size"], heads, cfg.get("num_key_value_heads", heads), hd,
            cfg["vocab_size"]]
    out = os.path.join(ROOT, "build", "bench-kernels")
    os.makedirs(out, exist_ok=True)
    exe = build_backend_program(out, "bench_kernels", ["benchmarks/bench_kernels.c"], cu_sources=["benchmarks/bench_stream.cu"])
    try:
        r = subprocess.run([exe, *map(str, dims)], capture_output=True, text=True, cwd=ROOT, timeout=args.timeout)
        stdout, failed = r.stdout, r.returncode != 0 and f"exit {r.returncode}\n{r.stderr}"
    except subprocess.TimeoutExpired as t:  # print what was measured before the hang
        stdout = t.stdout.decode() if isinstance(t.stdout, bytes) else (t.stdout or "")
        failed = f"timed out after {args.timeout} s"
    rows = []
    for line in stdout.splitlines():
        name, shape, impl, us, nbytes, flops = line.split("\t")
        rows.append(dict(name=name, shape=shape, impl=impl, us=float(us), bytes=float(nbytes), flops=float(flops)))
    copy = next((x for x in rows if x["name"] == "ceiling.copy"), None)
    gemm = next((x for x in rows if x["name"] == "ceiling.gemm"), None)
    if not copy or not gemm:
        sys.exit(f"bench_kernels failed before its ceilings: {failed}\n{stdout}")
    bw = copy["bytes"] / (copy["us"] * 1e-6)
    rate = gemm["flops"] / (gemm["us"] * 1e-6)
    print(f"config {args.config}: hidden {dims[0]} inter {dims[1]} heads {dims[2]}/{dims[3]} head_dim {dims[4]} vocab {dims[5]}")
    print(f"ceilings: copy {bw / 1e9:.0f} GB/s, bf16 GEMM {rate / 1e12:.0f} TFLOP/s")
    for x in rows:
        if x["name"] == "ceiling.read":
            print(f"read-only stream ({x['impl']}): {x['bytes'] / (x['us'] * 1e-6) / 1e9:.0f} GB/s "
                  f"({x['bytes'] / (x['us'] * 1e-6) / bw:.2f} of copy)")
    print(f"{'kernel':20s} {'shape':34s} {'impl':9s} {'us':>9s} {'GB/s':>7s} {'of bw':>6s} {'TFLOP/s':>8s} {'of gemm':>7s}")
    for x in rows:
        if x["name"].startswith("ceiling"):
            continue
        gbs = x["bytes"] / (x["us"] * 1e-6)
        tfs = x["flops"] / (x["us"] * 1e-6)
        print(f"{x['name']:20s} {x['shape']:34s} {x['impl']:9s} {x['us']:9.1f} {gbs / 1e9:7.0f} {gbs / bw:6.2f} "
              f"{tfs / 1e12:8.1f} {tfs / rate:7.2f}")
    if failed:
        sys.exit(f"bench_kernels failed: {failed}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(copy_bw=bw, gemm_rate=rate, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
