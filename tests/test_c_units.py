"""Builds the C unit-test binary from csrc/ (all but the Python binding and CUDA kernels) +
tests/c/, twice — optimised, and under AddressSanitizer + UndefinedBehaviorSanitizer with leak
detection — and runs each registered TEST_CASE in both as its own pytest case.
LIGHTLLM_SANITIZE=0 skips the sanitizer build, =only runs just it."""
import glob
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODE = os.environ.get("LIGHTLLM_SANITIZE", "1")
BUILDS = {"0": ["plain"], "only": ["asan"]}.get(MODE, ["plain", "asan"])
FLAGS = {"plain": ["-O2"],
         "asan": ["-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]}
_EXES = {}


def unit_exe(build):
    if build not in _EXES:
        srcs = [s for s in glob.glob(os.path.join(ROOT, "csrc", "**", "*.c"), recursive=True)
                if not any(os.sep + d + os.sep in s for d in ("py", "kernels", "cuda"))]
        srcs += glob.glob(os.path.join(ROOT, "tests", "c", "*.c"))
        out = os.path.join(ROOT, "build", "unit-" + build)
        os.makedirs(out, exist_ok=True)
        exe = os.path.join(out, "unit")
        flags = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-pthread", "-g",
                 "-I" + os.path.join(ROOT, "csrc"), "-I" + os.path.join(ROOT, "tests", "c"), *FLAGS[build]]
        subprocess.check_call(["cc", *flags, *sorted(srcs), "-o", exe, "-lm"])
        _EXES[build] = exe
    return _EXES[build]


def _cases():
    names = subprocess.check_output([unit_exe("plain" if "plain" in BUILDS else "asan"), "--list"], text=True).split()
    return [(b, n) for b in BUILDS for n in names]


@pytest.mark.parametrize("build, name", _cases())
def test_c_unit(build, name):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run([unit_exe(build), name], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert r.returncode == 0, f"C unit test {name} ({build}) failed:\n{r.stdout}\n{r.stderr}"
