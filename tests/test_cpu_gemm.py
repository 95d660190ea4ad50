"""cpu_gemm_linear through lightllm._C.gemm: y = x @ w.T (+ bias) against a float64 numpy
reference for odd shapes and every weight dtype, and the batch-invariance contract: a row's
bits do not depend on m, on its position in the batch or on the thread count."""
import os
import subprocess
import sys

import numpy as np
import pytest

from lightllm import _C

DTYPES = ["f32", "f16", "bf16"]


def to_bf16(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def weights(w, dtype):
    """(raw buffer for _C.gemm, the exact float32 values it holds)."""
    if dtype == "f32":
        return w, w
    if dtype == "f16":
        h = w.astype(np.float16)
        return h.view(np.uint16), h.astype(np.float32)
    b = to_bf16(w)
    return b, (b.astype(np.uint32) << 16).view(np.float32)


def gemm(x, w_raw, dtype, bias=None, num_threads=0):
    y = np.full((x.shape[0], w_raw.shape[0]), np.nan, np.float32)
    _C.gemm(x, w_raw, y, dtype, bias=bias, num_threads=num_threads)
    return y


def make(m, n, k, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32),
            rng.standard_normal(n, dtype=np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 17, 64, 129])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 33), (33, 7), (257, 257), (1000, 129), (65, 1000)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_float64_reference(dtype, m, n, k, with_bias):
    x, w, b = make(m, n, k)
    w_raw, w_exact = weights(w, dtype)
    bias = b if with_bias else None
    y = gemm(x, w_raw, dtype, bias)
    ref = x.astype(np.float64) @ w_exact.T.astype(np.float64)
    if with_bias:
        ref += b
    # fp32 sequential sum: error <= ~k * eps * sum |x||w| (loose by a factor of a few)
    scale = np.abs(x).astype(np.float64) @ np.abs(w_exact.T).astype(np.float64) + 1.0
    assert np.all(np.isfinite(y))
    assert np.all(np.abs(y - ref) <= 4 * k * np.finfo(np.float32).eps * scale)


def test_f16_subnormal_and_large_weights():
    x, w, _ = make(5, 40, 70)
    w[:, ::3] *= 1e-6          # f16 subnormals
    w[:, 1::7] *= 1e3
    w_raw, w_exact = weights(w, "f16")
    y = gemm(x, w_raw, "f16")
    ref = x.astype(np.float64) @ w_exact.T.astype(np.float64)
    assert np.allclose(y, ref, rtol=1e-4, atol=1e-3)


def test_k_zero_gives_bias():
    x = np.zeros((3, 0), np.float32)
    w = np.zeros((5, 0), np.float32)
    b = np.arange(5, dtype=np.float32)
    assert np.array_equal(gemm(x, w, "f32", b), np.tile(b, (3, 1)))
    assert np.array_equal(gemm(x, w, "f32"), np.zeros((3, 5), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(300, 333, 1000), (40, 700, 4100), (1100, 70, 260)])
def test_batch_invariance_bitwise(dtype, m, n, k):
    x, w, b = make(m, n, k, seed=1)
    w_raw, _ = weights(w, dtype)
    big = gemm(x, w_raw, dtype, b)
    for i in [0, 1, 5, m // 2, m - 1]:
        one = gemm(x[i:i + 1], w_raw, dtype, b)
        assert np.array_equal(one[0], big[i]), f"row {i} differs alone vs in a batch of {m}"
    for lo, hi in [(3, 10), (7, 7 + 24), (m - 13, m)]:
        part = gemm(np.ascontiguousarray(x[lo:hi]), w_raw, dtype, b)
        assert np.array_equal(part, big[lo:hi]), f"rows {lo}:{hi} differ as a sub-batch"


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_invariance_bitwise(dtype):
    x, w, b = make(77, 517, 1031, seed=2)
    w_raw, _ = weights(w, dtype)
    ref = gemm(x, w_raw, dtype, b, num_threads=1)
    for t in [2, 3, 4, 7]:
        assert np.array_equal(gemm(x, w_raw, dtype, b, num_threads=t), ref), f"{t} threads differ"
    assert np.array_equal(gemm(x[:1], w_raw, dtype, b, num_threads=3)[0], ref[0])


def test_bad_arguments():
    x, w, b = make(2, 3, 4)
    y = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        _C.gemm(x, w, y, "f64")
    with pytest.raises(ValueError):
        _C.gemm(x, w[:, :3].copy(), y, "f32")
    with pytest.raises(ValueError):
        _C.gemm(x, w, y, "bf16")                    # 4-byte items for a 2-byte dtype
    with pytest.raises(ValueError):
        _C.gemm(x, w, np.zeros((2, 4), np.float32), "f32")
    with pytest.raises(ValueError):
        _C.gemm(x, w, y, "f32", bias=np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        _C.gemm(x.astype(np.float64), w, y, "f32")
    assert _C.bench_gemm(x, w, y, "f32", iters=2, num_threads=1) > 0


_ISA_CHECK = r"""
import numpy as np, sys
sys.path.insert(0, {tests!r})
from test_cpu_gemm import make, weights, gemm
for dtype in ("f32", "f16", "bf16"):
    x, w, b = make(45, 131, 300, seed=3)
    w_raw, w_exact = weights(w, dtype)
    y = gemm(x, w_raw, dtype, b, num_threads=3)
    ref = x.astype(np.float64) @ w_exact.T.astype(np.float64) + b
    assert np.allclose(y, ref, rtol=1e-4, atol=1e-3), dtype
    for i in (0, 13, 44):
        assert np.array_equal(gemm(x[i:i + 1], w_raw, dtype, b, num_threads=1)[0], y[i]), (dtype, i)
print("ok")
"""


@pytest.mark.parametrize("isa", ["portable", "avx2", "avx512"])
def test_each_isa_path(isa):
    """LIGHTLLM_CPU_GEMM_ISA forces a path (it falls back when the CPU lacks it)."""
    env = dict(os.environ, LIGHTLLM_CPU_GEMM_ISA=isa)
    code = _ISA_CHECK.format(tests=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.abspath(__file__)))  # not the repo root: import the installed package
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
