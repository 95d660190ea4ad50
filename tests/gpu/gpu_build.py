"""What the GPU test programs share: the GPU's compute capability, nvcc, and building one test
program (.cu files by nvcc for that GPU's architecture, C sources by gcc)."""
import glob
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


def build_backend_program(out_dir, name, c_sources, archs=None, cu_sources=()):
    """Links csrc/core + csrc/backend (CPU and CUDA) + engine/sampling.c + c_sources (paths under
    the repository) with every csrc/kernels/*.cu and cu_sources (nvcc, the flags of setup.py; archs
    default LIGHTLLM_CUDA_ARCHS or 90a) into out_dir/name, with warnings as errors; returns its path."""
    nvcc = find_nvcc()
    cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    archs = archs or os.environ.get("LIGHTLLM_CUDA_ARCHS", "90a").split(",")
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]

    def run(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"build failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")

    objs = []
    for src in sorted(glob.glob(os.path.join(ROOT, "csrc", "kernels", "*.cu"))) + [os.path.join(ROOT, s) for s in cu_sources]:
        obj = os.path.join(out_dir, os.path.basename(src) + ".o")
        run([nvcc, "-c", src, "-o", obj, "-O3", "-std=c++17", "-Icsrc", "-Xcompiler", "-fPIC", "--expt-relaxed-constexpr",
             "-Werror", "all-warnings", "-lineinfo", *gencode])
        objs.append(obj)
    srcs = [s for d in ("core", "backend") for s in glob.glob(os.path.join(ROOT, "csrc", d, "**", "*.c"), recursive=True)]
    srcs += [os.path.join(ROOT, "csrc", "engine", "sampling.c")] + [os.path.join(ROOT, s) for s in c_sources]
    libdirs = [os.path.join(cuda_home, d) for d in ("lib64", "lib", "targets/x86_64-linux/lib")
               if os.path.isdir(os.path.join(cuda_home, d))]
    exe = os.path.join(out_dir, name)
    run(["gcc", "-std=c11", "-O2", "-g", "-D_GNU_SOURCE", "-DLIGHTLLM_WITH_CUDA=1", "-Wall", "-Wextra", "-Werror",
         "-Wno-unused-parameter", "-pthread", "-Icsrc", "-I" + os.path.join(cuda_home, "include"), *sorted(srcs), *objs,
         "-o", exe, *[f"-L{d}" for d in libdirs], *[f"-Wl,-rpath,{d}" for d in libdirs],
         "-lcudart", "-lcublasLt", "-lcublas", "-lstdc++", "-lm"])
    return exe
