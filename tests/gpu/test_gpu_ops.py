"""CUDA backend ops against the CPU backend (tests/gpu/test_ops.c), one pytest case per op.

Builds build/gpu-ops/test_ops from csrc/core + csrc/backend (CPU and CUDA) + engine/sampling.c + tests/gpu/test_ops.c
with gcc, and csrc/kernels/*.cu with nvcc (the flags of setup.py; LIGHTLLM_CUDA_ARCHS, default
90a), then runs one op group per case.  Skipped without nvidia-smi / a visible GPU / nvcc."""
import glob
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.gpu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPS = ["embedding", "gather_rows", "rmsnorm", "add_rmsnorm", "silu_mul", "linear", "linear_logits",
       "qk_norm_rope_store", "sample", "errors"]
ATTENTION_STUB = """#include "kernels/kernels.h"
extern "C" size_t kernels_attention_workspace_bytes(int32_t, int32_t, int32_t, int32_t) { return 256; }
extern "C" cudaError_t kernels_attention(const void *, const void *, int32_t, int32_t, int32_t, float, int32_t, int32_t,
    const int32_t *, const int32_t *, const int32_t *, const int32_t *, const int32_t *, int32_t, int32_t, void *, void *,
    size_t, cudaStream_t) { return cudaErrorNotSupported; }
"""


def _gpu_present():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def _nvcc():
    nvcc = shutil.which("nvcc") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")
    return nvcc if os.path.exists(nvcc) else None


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f"build failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def ops_exe():
    if not _gpu_present():
        pytest.skip("no NVIDIA GPU (nvidia-smi absent or lists none)")
    nvcc = _nvcc()
    if not nvcc:
        pytest.skip("nvcc not found")
    cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    out = os.path.join(ROOT, "build", "gpu-ops")
    os.makedirs(out, exist_ok=True)
    archs = os.environ.get("LIGHTLLM_CUDA_ARCHS", "90a").split(",")
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    objs = []
    for src in sorted(glob.glob(os.path.join(ROOT, "csrc", "kernels", "*.cu"))):
        obj = os.path.join(out, os.path.basename(src) + ".o")
        _run([nvcc, "-c", src, "-o", obj, "-O3", "-std=c++17", "-Icsrc", "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr",
              "-Werror", "all-warnings", "-lineinfo", *gencode])
        objs.append(obj)
    if not os.path.exists(os.path.join(ROOT, "csrc", "kernels", "attention.cu")):  # tested elsewhere; link a stub
        stub = os.path.join(out, "attention_stub.cu")
        with open(stub, "w") as f:
            f.write(ATTENTION_STUB)
        _run([nvcc, "-c", stub, "-o", stub + ".o", "-Icsrc", "-Xcompiler", "-fPIC", *gencode])
        objs.append(stub + ".o")
    srcs = [s for d in ("core", "backend") for s in glob.glob(os.path.join(ROOT, "csrc", d, "**", "*.c"), recursive=True)]
    srcs.append(os.path.join(ROOT, "csrc", "engine", "sampling.c"))  # the CPU backend's sample op
    srcs.append(os.path.join(ROOT, "tests", "gpu", "test_ops.c"))
    libdirs = [os.path.join(cuda_home, d) for d in ("lib64", "lib", "targets/x86_64-linux/lib")
               if os.path.isdir(os.path.join(cuda_home, d))]
    exe = os.path.join(out, "test_ops")
    _run(["gcc", "-std=c11", "-O2", "-g", "-D_GNU_SOURCE", "-DLIGHTLLM_WITH_CUDA=1", "-Wall", "-Wextra", "-Werror",
          "-Wno-unused-parameter", "-pthread", "-Icsrc", "-I" + os.path.join(cuda_home, "include"), *sorted(srcs), *objs,
          "-o", exe, *[f"-L{d}" for d in libdirs], *[f"-Wl,-rpath,{d}" for d in libdirs],
          "-lcudart", "-lcublasLt", "-lcublas", "-lstdc++", "-lm"])
    return exe


@pytest.mark.parametrize("op", OPS)
def test_op(ops_exe, op):
    r = subprocess.run([ops_exe, op], capture_output=True, text=True, timeout=600, cwd=ROOT)
    print(r.stdout)
    if r.returncode == 77:
        pytest.skip("the test binary found no CUDA device")
    assert r.returncode == 0, f"{op} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
