"""The GPU sampling kernel's source (csrc/kernels/sampling.cu) run on the host, without a GPU.

tests/gpu/emu emulates a CUDA block with 1024 cooperative fibers (barriers, shuffles and
ballots are yield points; a barrier not reached by its whole scope aborts as a deadlock), so
the kernel's logic, its shared-memory protocol and its launcher run in CI against the CPU
sampler (engine/sampling.c) through the same driver as the GPU test (tests/gpu/test_sampling.cu
--small: few rows, every parameter combination and logits shape, a chi-square check).  A launch
of several kernels (the split path: split_p1, split_p2, then the per-row block) runs them in
order, each grid one block at a time, so global atomics are plain host operations.
Real-GPU concerns (races without a barrier, resources, speed) stay with tests/gpu.
LIGHTLLM_EMU_SCALE=N runs N times as many seeds.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU = os.path.join(ROOT, "tests", "gpu", "emu")
CXX_FLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-DKERNELS_SAMPLING_EMULATE", "-I" + EMU,
             "-I" + os.path.join(ROOT, "csrc"), "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
             "-Wno-unknown-pragmas"]


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f"build failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def emu_binary(tmp_path_factory):
    if not shutil.which("g++") or not shutil.which("gcc"):
        pytest.skip("g++ / gcc not found")
    out = str(tmp_path_factory.mktemp("sampling_emu"))
    objs = []
    for src in ("csrc/engine/sampling.c", "csrc/core/log.c", "csrc/core/status.c"):
        obj = os.path.join(out, os.path.basename(src)[:-2] + ".o")
        _run(["gcc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-Icsrc", "-c", src, "-o", obj])
        objs.append(obj)
    for src, forced in (("csrc/kernels/sampling.cu", True), ("tests/gpu/test_sampling.cu", True),
                        ("tests/gpu/emu/emu_runtime.cpp", False)):
        obj = os.path.join(out, os.path.basename(src) + ".o")
        _run(["g++", *CXX_FLAGS, *(["-include", "emu_device.h", "-x", "c++"] if forced else []), "-c", src, "-o", obj])
        objs.append(obj)
    exe = os.path.join(out, "test_sampling_emu")
    _run(["g++", *objs, "-o", exe, "-lm"])
    return exe


@pytest.mark.parametrize("blocks", ["0", "3"])
def test_sampling_kernel_on_host_emulator(emu_binary, blocks):
    """blocks 0: automatic (the split path where the emulated H200 would take it: the larger
    vocabularies at m = 1); 3: every launch of up to KERNELS_SAMPLING_SPLIT_MAX_ROWS rows split
    in three (slices of a multiple of 32 tokens: uneven, and empty ones at tiny vocabularies).
    Either way each case also runs the single-block path against the split path with several
    block counts (2 .. 256) and requires identical tokens, ranks, top ids and diagnostics."""
    scale = os.environ.get("LIGHTLLM_EMU_SCALE", "1")
    r = subprocess.run([emu_binary, "--small", "--scale", scale, "--blocks", blocks], capture_output=True, text=True,
                       timeout=1800)
    print(r.stdout[-20000:])
    assert r.returncode == 0 and "ALL PASSED" in r.stdout, r.stdout[-8000:] + r.stderr[-2000:]
