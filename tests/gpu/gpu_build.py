"""What the GPU test programs share: the GPU's compute capability, nvcc, and building one test
program (.cu files by nvcc for that GPU's architecture, C sources by gcc)."""
import os
import shutil
import subprocess

import pytest

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


def build_test_program(out_dir, cap, name, cu_sources, c_sources, c_flags=(), nvcc_flags=(), libs=("-lm",)):
    """Compiles c_sources (paths under the repository) with gcc and links them with cu_sources
    into out_dir/name for the GPU of compute capability cap; returns the program's path."""
    major, minor = cap.split(".")[:2]
    arch = f"{major}{minor}" + ("a" if major == "9" else "")
    csrc = "-I" + os.path.join(ROOT, "csrc")
    objs = []
    for src in c_sources:
        obj = os.path.join(out_dir, os.path.basename(src)[:-2] + ".o")
        subprocess.run(["gcc", "-std=c11", "-D_GNU_SOURCE", "-O2", *c_flags, csrc, "-c", os.path.join(ROOT, src), "-o", obj],
                       check=True)
        objs.append(obj)
    exe = os.path.join(out_dir, name)
    subprocess.run([find_nvcc(), "-O3", "-std=c++17", csrc, *nvcc_flags, f"-gencode=arch=compute_{arch},code=sm_{arch}",
                    *[os.path.join(ROOT, s) for s in cu_sources], *objs, "-o", exe, *libs], check=True)
    return exe


def build_or_skip(tmp_path_factory, name, build):
    """build(out_dir, cap) in a fresh temporary folder, or pytest.skip without a GPU or nvcc."""
    cap = gpu_compute_cap()
    if cap is None:
        pytest.skip("no NVIDIA GPU (nvidia-smi missing or reports none)")
    if find_nvcc() is None:
        pytest.skip("nvcc not found")
    return build(str(tmp_path_factory.mktemp(name)), cap)
