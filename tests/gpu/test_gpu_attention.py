"""GPU attention (csrc/kernels/attention.cu) against the CPU reference (cpu_attention.c).

Builds tests/gpu/test_attention.cu with nvcc (the CPU backend and core compiled by gcc, as
plain C) and runs it; the cases and the tolerance are in that file.  Skipped without a GPU.
`python tests/gpu/test_gpu_attention.py --bench` builds and runs the timing mode.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

pytestmark = pytest.mark.gpu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    for src in sorted(glob.glob(os.path.join(ROOT, "csrc/backend/cpu/*.c")) + glob.glob(os.path.join(ROOT, "csrc/core/*.c"))
                      + [os.path.join(ROOT, "csrc/engine/sampling.c")]):  # the CPU backend's sample op
        obj = os.path.join(out_dir, os.path.basename(src)[:-2] + ".o")
        subprocess.run(["gcc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-I" + os.path.join(ROOT, "csrc"), "-c", src, "-o", obj],
                       check=True)
        objs.append(obj)
    exe = os.path.join(out_dir, "test_attention")
    subprocess.run([find_nvcc(), "-O3", "-std=c++17", "-I" + os.path.join(ROOT, "csrc"),
                    f"-gencode=arch=compute_{arch},code=sm_{arch}",
                    os.path.join(ROOT, "tests/gpu/test_attention.cu"), os.path.join(ROOT, "csrc/kernels/attention.cu"),
                    *objs, "-o", exe, "-lpthread", "-lm"], check=True)
    return exe


@pytest.fixture(scope="module")
def attention_binary(tmp_path_factory):
    cap = gpu_compute_cap()
    if cap is None:
        pytest.skip("no NVIDIA GPU (nvidia-smi missing or reports none)")
    if find_nvcc() is None:
        pytest.skip("nvcc not found")
    return build(str(tmp_path_factory.mktemp("attention")), cap)


def test_attention_matches_cpu_reference(attention_binary):
    r = subprocess.run([attention_binary], capture_output=True, text=True, timeout=1800)
    print(r.stdout)
    assert r.returncode == 0 and "ALL PASSED" in r.stdout, r.stdout[-6000:] + r.stderr[-2000:]


if __name__ == "__main__":
    cap = gpu_compute_cap()
    if cap is None or find_nvcc() is None:
        sys.exit("needs an NVIDIA GPU and nvcc")
    with tempfile.TemporaryDirectory() as d:
        sys.exit(subprocess.run([build(d, cap), *sys.argv[1:]]).returncode)
