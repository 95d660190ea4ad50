"""GPU sampling (csrc/kernels/sampling.cu) against the CPU sampler (engine/sampling.c).

Builds tests/gpu/test_sampling.cu with nvcc (engine/sampling.c and core compiled by gcc, as
plain C11: no FMA contraction, the arithmetic the kernel reproduces) and runs it; the cases,
tolerances and the timing table are in that file (it prints every mismatch with its row,
parameters, both tokens, the kernel's u and its margins).  Skipped without a GPU.
`python tests/gpu/test_gpu_sampling.py [--bench|--quick]` builds and runs it directly.
"""
import subprocess
import sys
import tempfile

import pytest

from gpu_build import build_or_skip, build_test_program, find_nvcc, gpu_compute_cap  # noqa: E402

pytestmark = pytest.mark.gpu

C_SOURCES = ["csrc/engine/sampling.c", "csrc/core/log.c", "csrc/core/status.c"]


def build(out_dir, cap):
    """Compiles the test program into out_dir; returns its path."""
    return build_test_program(out_dir, cap, "test_sampling", ["tests/gpu/test_sampling.cu", "csrc/kernels/sampling.cu"],
                              C_SOURCES, c_flags=("-Wall", "-Wextra", "-Werror"), nvcc_flags=("-Werror", "all-warnings"))


@pytest.fixture(scope="module")
def sampling_binary(tmp_path_factory):
    return build_or_skip(tmp_path_factory, "sampling", build)


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
