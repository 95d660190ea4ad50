"""GPU attention (csrc/kernels/attention.cu) against the CPU reference (cpu_attention.c).

Builds tests/gpu/test_attention.cu with nvcc (the CPU backend and core compiled by gcc, as
plain C) and runs it; the cases and the tolerance are in that file.  Skipped without a GPU.
`python tests/gpu/test_gpu_attention.py --bench` builds and runs the timing mode.
"""
import glob
import subprocess
import sys
import tempfile

import pytest

from gpu_build import ROOT, build_or_skip, build_test_program, find_nvcc, gpu_compute_cap  # noqa: E402

pytestmark = pytest.mark.gpu



def build(out_dir, cap):
    """Compiles the test program into out_dir; returns its path."""
    c_sources = sorted(glob.glob("csrc/backend/cpu/*.c", root_dir=ROOT) + glob.glob("csrc/core/*.c", root_dir=ROOT) +
                       ["csrc/backend/host_sampler.c", "csrc/engine/sampling.c"])
    return build_test_program(out_dir, cap, "test_attention", ["tests/gpu/test_attention.cu", "csrc/kernels/attention.cu"],
                              c_sources, libs=("-lpthread", "-lm"))


@pytest.fixture(scope="module")
def attention_binary(tmp_path_factory):
    return build_or_skip(tmp_path_factory, "attention", build)


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
