"""Build lightllm._C from csrc/ (C11).

LIGHTLLM_CUDA=auto|0|1: with nvcc found (PATH or CUDA_HOME) and auto/1, csrc/kernels/*.cu are
compiled by nvcc (LIGHTLLM_CUDA_ARCHS, default "90a,80" + PTX of the last) and csrc/backend/cuda
is built in, linked with cudart, cuBLAS and cuBLASLt; lightllm._C.WITH_CUDA tells which.
LIGHTLLM_SANITIZE=1 builds with AddressSanitizer + UndefinedBehaviorSanitizer."""
import glob
import os
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

C_FLAGS = ["-std=c11", "-O3", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
           "-Wno-unused-parameter", "-fno-strict-aliasing", "-pthread"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]


def find_nvcc():
    mode = os.environ.get("LIGHTLLM_CUDA", "auto").lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"LIGHTLLM_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return None
    nvcc = shutil.which("nvcc") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")
    if not os.path.exists(nvcc) or not glob.glob("csrc/kernels/*.cu"):
        if mode == "1":
            raise SystemExit("LIGHTLLM_CUDA=1 but nvcc (or csrc/kernels/*.cu) was not found; set CUDA_HOME or PATH")
        return None
    return nvcc


NVCC = find_nvcc()
CUDA_HOME = os.path.dirname(os.path.dirname(os.path.realpath(NVCC))) if NVCC else None


def c_sources():
    srcs = sorted(glob.glob("csrc/**/*.c", recursive=True))
    return [s for s in srcs if not s.startswith("csrc/kernels/") and (NVCC or not s.startswith("csrc/backend/cuda/"))]


class BuildExt(build_ext):
    """Compiles csrc/kernels/*.cu with nvcc into objects linked into the extension."""

    def build_extension(self, ext):
        if NVCC:
            archs = os.environ.get("LIGHTLLM_CUDA_ARCHS", "90a,80").split(",")
            gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
            gencode += [f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
            os.makedirs(self.build_temp, exist_ok=True)
            objs = []
            for src in sorted(glob.glob("csrc/kernels/*.cu")):
                obj = os.path.join(self.build_temp, os.path.basename(src) + ".o")
                cmd = [NVCC, "-c", src, "-o", obj, "-O3", "-std=c++17", "-Icsrc", "-Xcompiler", "-fPIC",
                       "--expt-relaxed-constexpr", "-Werror", "all-warnings", "-lineinfo", *gencode]
                print(" ".join(cmd), flush=True)
                subprocess.check_call(cmd)
                objs.append(obj)
            ext.extra_objects = objs
        super().build_extension(ext)


sanitize = os.environ.get("LIGHTLLM_SANITIZE", "0") == "1"
cuda_lib = [os.path.join(CUDA_HOME, d) for d in ("lib64", "lib", "targets/x86_64-linux/lib")
            if os.path.isdir(os.path.join(CUDA_HOME, d))] if NVCC else []
ext = Extension(
    "lightllm._C",
    sources=c_sources(),
    include_dirs=["csrc"] + ([os.path.join(CUDA_HOME, "include")] if NVCC else []),
    define_macros=[("LIGHTLLM_WITH_CUDA", "1")] if NVCC else [],
    extra_compile_args=C_FLAGS + (SANITIZE + ["-O1", "-g"] if sanitize else []),
    extra_link_args=["-pthread"] + (SANITIZE if sanitize else []),
    libraries=["m"] + (["cudart", "cublasLt", "cublas", "stdc++"] if NVCC else []),  # nvcc host code needs libstdc++
    library_dirs=cuda_lib,
    runtime_library_dirs=cuda_lib,
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
