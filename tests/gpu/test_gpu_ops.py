"""CUDA backend ops against the CPU backend (tests/gpu/test_ops.c), one pytest case per op.

Builds build/gpu-ops/test_ops (gpu_build.build_backend_program: csrc/core + csrc/backend +
tests/gpu/test_ops.c with gcc, csrc/kernels/*.cu with nvcc; LIGHTLLM_CUDA_ARCHS, default 90a), then
runs one op group per case.  Skipped without nvidia-smi / a visible GPU / nvcc."""
import os
import subprocess

import pytest

from gpu_build import ROOT, build_backend_program, find_nvcc, gpu_compute_cap

pytestmark = pytest.mark.gpu

OPS = ["embedding", "gather_rows", "rmsnorm", "add_rmsnorm", "silu_mul", "linear", "linear_logits", "linear_silu",
       "linear_add_rmsnorm", "qk_norm_rope_store", "errors"]


@pytest.fixture(scope="module")
def ops_exe():
    if gpu_compute_cap() is None:
        pytest.skip("no NVIDIA GPU (nvidia-smi absent or lists none)")
    if not find_nvcc():
        pytest.skip("nvcc not found")
    out = os.path.join(ROOT, "build", "gpu-ops")
    os.makedirs(out, exist_ok=True)
    return build_backend_program(out, "test_ops", ["tests/gpu/test_ops.c"])


@pytest.mark.parametrize("op", OPS)
def test_op(ops_exe, op):
    r = subprocess.run([ops_exe, op], capture_output=True, text=True, timeout=600, cwd=ROOT)
    print(r.stdout)
    if r.returncode == 77:
        pytest.skip("the test binary found no CUDA device")
    assert r.returncode == 0, f"{op} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
