"""GPU sampling (csrc/kernels/sampling.cu) against the CPU sampler (engine/sampling.c).

Builds tests/gpu/test_sampling.cu with nvcc (engine/sampling.c and core compiled by gcc, as
plain C11: no FMA contraction, the arithmetic the kernel reproduces) and runs it; the cases,
tolerances and the timing table are in that file (it prints every mismatch with its row,
parameters, both tokens, the kernel's u and its margins).  Skipped without a GPU.
`python tests/gpu/test_gpu_sampling.py [--bench|--quick|--no-bench] [--blocks N]` builds and runs it
directly.
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


def run_binary(args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    print(r.stdout[-20000:])
    if r.returncode == 77:
        pytest.skip("the test binary found no CUDA device")
    assert r.returncode == 0 and "ALL PASSED" in r.stdout, r.stdout[-8000:] + r.stderr[-2000:]


def test_sampling_matches_cpu_sampler(sampling_binary):
    """Automatic blocks per row (small m takes the split path), every case also compared
    between the split and the single-block path; then the timing table (both paths)."""
    run_binary([sampling_binary])


@pytest.mark.parametrize("blocks", ["1", "5"])
def test_sampling_forced_path_matches_cpu_sampler(sampling_binary, blocks):
    """Every launch forced onto one path: 1 = one block per row (LIGHTLLM_SAMPLE_BLOCKS=1's
    fallback), 5 = five blocks per row wherever the workspace allows (m <= 64)."""
    run_binary([sampling_binary, "--quick", "--no-bench", "--blocks", blocks])


if __name__ == "__main__":
    cap = gpu_compute_cap()
    if cap is None or find_nvcc() is None:
        sys.exit("needs an NVIDIA GPU and nvcc")
    with tempfile.TemporaryDirectory() as d:
        sys.exit(subprocess.run([build(d, cap), *sys.argv[1:]]).returncode)
