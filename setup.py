"""Build lightllm._C from csrc/ (C11). LIGHTLLM_CUDA=auto|0|1 adds csrc/kernels/*.cu via nvcc;
LIGHTLLM_SANITIZE=1 builds with AddressSanitizer + UndefinedBehaviorSanitizer."""
import glob
import os
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
C_FLAGS = ["-std=c11", "-O3", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
           "-Wno-unused-parameter", "-fno-strict-aliasing", "-pthread"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]


def c_sources():
    srcs = sorted(glob.glob("csrc/**/*.c", recursive=True))
    return [s for s in srcs if not s.startswith("csrc/kernels/")]


def cuda_mode():
    mode = os.environ.get("LIGHTLLM_CUDA", "auto").lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"LIGHTLLM_CUDA must be auto, 0 or 1, got {mode!r}")
    cu = sorted(glob.glob("csrc/kernels/*.cu"))
    nvcc = shutil.which("nvcc") or (os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"))
    have = os.path.exists(nvcc)
    if mode == "1" and not have:
        raise SystemExit("LIGHTLLM_CUDA=1 but nvcc was not found (set CUDA_HOME or PATH)")
    use = bool(cu) and have and mode != "0"
    return use, nvcc, cu


class BuildExt(build_ext):
    """Compiles .cu files with nvcc into objects linked into the extension."""

    def build_extension(self, ext):
        use_cuda, nvcc, cu = cuda_mode()
        if use_cuda:
            cuda_home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
            archs = os.environ.get("LIGHTLLM_CUDA_ARCHS", "90a,80").split(",")
            gencode = []
            for a in archs:
                gencode += [f"-gencode=arch=compute_{a},code=sm_{a}"]
            gencode += [f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
            objs = []
            os.makedirs(self.build_temp, exist_ok=True)
            for src in cu:
                obj = os.path.join(self.build_temp, os.path.basename(src) + ".o")
                cmd = [nvcc, "-c", src, "-o", obj, "-O3", "-std=c++17", "-Icsrc", "--compiler-options", "-fPIC",
                       "-Werror", "all-warnings", "-lineinfo"] + gencode
                print(" ".join(cmd))
                subprocess.check_call(cmd)
                objs.append(obj)
            ext.extra_objects = objs
            ext.define_macros.append(("LIGHTLLM_WITH_CUDA", "1"))
            ext.include_dirs.append(os.path.join(cuda_home, "include"))
            ext.library_dirs += [os.path.join(cuda_home, "lib64"), os.path.join(cuda_home, "lib")]
            ext.libraries += ["cudart", "cublas", "cublasLt"]
        super().build_extension(ext)


sanitize = os.environ.get("LIGHTLLM_SANITIZE", "0") == "1"
ext = Extension(
    "lightllm._C",
    sources=c_sources(),
    include_dirs=["csrc"],
    extra_compile_args=C_FLAGS + (SANITIZE + ["-O1", "-g"] if sanitize else []),
    extra_link_args=["-pthread"] + (SANITIZE if sanitize else []),
    libraries=["m"],
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
