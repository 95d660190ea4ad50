"""CPU GEMM benchmark: lightllm._C.bench_gemm (f32 and bf16 weights) beside numpy float32 matmul
(OpenBLAS) on the same shapes, y[m, n] = x[m, k] @ w[n, k].T.  Both sides run with every CPU the
process may use; timings are best-of, measured in alternating rounds so that background load
hits both alike.  Usage: python benchmarks/bench_cpu_gemm.py [--quick] [--threads N]"""
import argparse
import time

import numpy as np

from lightllm import _C

DECODE = [(1, 4096, 4096), (4, 4096, 4096), (16, 4096, 4096), (1, 11008, 4096), (1, 4096, 11008)]
PREFILL = [(128, 4096, 4096), (512, 4096, 4096), (512, 11008, 4096), (512, 4096, 11008)]
SETTLE_S = 0.3    # OpenBLAS workers busy-wait ~0.1 s after a call: let them sleep before we run
QUICK = [(1, 4096, 4096), (16, 4096, 4096), (128, 4096, 4096), (512, 4096, 4096)]


def to_bf16(a):
    """float32 -> bf16 bit patterns (uint16), round to nearest even."""
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def best_seconds(fn, iters):
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_shape(m, n, k, rounds, threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    w_bf16 = to_bf16(w)
    y = np.empty((m, n), np.float32)
    flops = 2.0 * m * n * k
    iters = max(2, min(20, int(2e9 / flops)))       # ~constant work per measurement
    wt = w.T
    np.matmul(x, wt)                                 # warm-up
    t_np = t_f32 = t_bf16 = float("inf")
    for _ in range(rounds):
        t_np = min(t_np, best_seconds(lambda: np.matmul(x, wt), iters))
        time.sleep(SETTLE_S)
        t_f32 = min(t_f32, _C.bench_gemm(x, w, y, "f32", iters=iters, num_threads=threads))
        t_bf16 = min(t_bf16, _C.bench_gemm(x, w_bf16, y, "bf16", iters=iters, num_threads=threads))
    return flops / t_np / 1e9, flops / t_f32 / 1e9, flops / t_bf16 / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="four shapes only")
    ap.add_argument("--threads", type=int, default=0, help="our thread count (0 = all CPUs)")
    args = ap.parse_args()
    shapes = QUICK if args.quick else DECODE + PREFILL
    rounds = 3
    print(f"{'m':>5} {'n':>6} {'k':>6} | {'numpy f32':>9} | {'ours f32':>9} {'ratio':>6} | "
          f"{'ours bf16':>9} {'ratio':>6}   (GFLOP/s)")
    ratios = []
    for m, n, k in shapes:
        g_np, g_f32, g_bf16 = bench_shape(m, n, k, rounds, args.threads)
        ratios += [g_f32 / g_np, g_bf16 / g_np]
        print(f"{m:>5} {n:>6} {k:>6} | {g_np:9.1f} | {g_f32:9.1f} {g_f32 / g_np:6.2f} | "
              f"{g_bf16:9.1f} {g_bf16 / g_np:6.2f}", flush=True)
    print(f"min ratio ours/numpy: {min(ratios):.2f}")


if __name__ == "__main__":
    main()
