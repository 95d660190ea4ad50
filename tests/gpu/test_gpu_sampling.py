"""GPU sampling (csrc/kernels/sampling.cu) against the CPU sampler (engine/sampling.c).

Builds tests/gpu/test_sampling.cu with nvcc (engine/sampling.c and core compiled by gcc, as
plain C11: no FMA contraction, the arithmetic the kernel reproduces) and runs it; the cases,
tolerances and the timing table are in that file (it prints every mismatch with its row,
parameters, both tokens, the kernel's u and its margins).  Skipped without a GPU.
`python tests/gpu/test_gpu_sampling.py [--bench|--quick]` builds and runs it directly.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

pytestmark = pytest.mark.gpu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C_SOURCES = ["csrc/engine/sampling.c", "csrc/core/log.c", "csrc/core/status.c"]


def gpu_compute_cap():
    """'9.0'-style compute capability of GPU 0, or None when nvidia-smi is missing or sees no GPU."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        r = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [s.strip() for s in r.stdout.splitlines() if s.strip()]
    return lines[0] if r.returncode == 0 and lines else None


def find_nvcc():
    nvcc = shutil.which("nvcc") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")
    return nvcc if os.path.exists(nvcc) else None


def build(out_dir, cap):
    """Compiles the test program into out_dir; returns its path."""
    major, minor = cap.split(".")[:2]
    arch = f"{major}{minor}" + ("a" if major == "9" else "")
    objs = []
    for src in C_SOURCES:
        obj = os.path.join(out_dir, os.path.basename(src)[:-2] + ".o")
        subprocess.run(["gcc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(ROOT, "csrc"),
                        "-c", os.path.join(ROOT, src), "-o", obj], check=True)
        objs.append(obj)
    exe = os.path.join(out_dir, "test_sampling")
    subprocess.run([find_nvcc(), "-O3", "-std=c++17", "-I" + os.path.join(ROOT, "csrc"), "-Werror", "all-warnings",
                    f"-gencode=arch=compute_{arch},code=sm_{arch}",
                    os.path.join(ROOT, "tests/gpu/test_sampling.cu"), os.path.join(ROOT, "csrc/kernels/sampling.cu"),
                    *objs, "-o", exe, "-lm"], check=True)
    return exe


@pytest.fixture(scope="module")
def sampling_binary(tmp_path_factory):
    cap = gpu_compute_cap()
    if cap is None:
        pytest.skip("no NVIDIA GPU (nvidia-smi missing or reports none)")
    if find_nvcc() is None:
        pytest.skip("nvcc not found")
    return build(str(tmp_path_factory.mktemp("sampling")), cap)


def test_sampling_matches_cpu_sampler(sampling_binary):
    r = subprocess.run([sampling_binary], capture_output=True, text=True, timeout=1200)
    print(r.stdout[-20000:])
    if r.returncode == 77:
        pytest.skip("the test binary found no CUDA device")
    assert r.returncode == 0 and "ALL PASSED" in r.stdout, r.stdout[-8000:] + r.stderr[-2000:]


if __name__ == "__main__":
    cap = gpu_compute_cap()
    if cap is None or find_nvcc() is None:
        sys.exit("needs an NVIDIA GPU and nvcc")
    with tempfile.TemporaryDirectory() as d:
        sys.exit(subprocess.run([build(d, cap), *sys.argv[1:]]).returncode)
