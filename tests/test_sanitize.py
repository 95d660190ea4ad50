"""The Python extension built with LIGHTLLM_SANITIZE=1 (AddressSanitizer + UBSan) runs a short
CPU generation clean: fixture checkpoint (greedy == transformers), chunked prefill, preemption,
n samples, stop strings and logprobs with the real Qwen3 vocabulary. (The C unit tests, which
include a full C-only generation, also run under ASan with leak detection: test_c_units.py.)"""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, sys
from lightllm import LLM, SamplingParams
fx = sys.argv[1]
ref = json.load(open(fx + "/reference.json"))
llm = LLM(fx, chunked_prefill_size=7, max_num_batched_tokens=32, max_num_seqs=4, max_total_token_num=96,
          router_max_new_token_len=2)
outs = llm.generate([{"prompt_token_ids": p} for p in ref["prompts"]],
                    SamplingParams(temperature=0, max_tokens=32, ignore_eos=True), use_tqdm=False)
assert [o.outputs[0].token_ids for o in outs] == ref["greedy"]
outs = llm.generate([{"prompt_token_ids": p} for p in ref["prompts"]],
                    SamplingParams(n=3, temperature=1.0, seed=3, max_tokens=12, logprobs=2, stop_token_ids=[7]),
                    use_tqdm=False)
assert all(len(o.outputs) == 3 for o in outs)
st = llm.stats()
assert st["num_preemptions"] > 0 and st["num_free_slots"] + st["num_cached_slots"] == 96
demo = LLM()
o = demo.generate(["héllo 🚀"] * 2, SamplingParams(temperature=1.2, max_tokens=40, stop=["a", "zz"]), use_tqdm=False)
assert all(isinstance(x.outputs[0].text, str) for x in o)
print("sanitized generation ok")
"""


def test_sanitized_extension_generation(tmp_path):
    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    asan = subprocess.check_output(["cc", "-print-file-name=libasan.so"], text=True).strip()
    ubsan = subprocess.check_output(["cc", "-print-file-name=libubsan.so"], text=True).strip()
    if not os.path.isabs(asan) or not os.path.exists(asan):
        pytest.skip("libasan is not available")
    lib = tmp_path / "lib"
    env = dict(os.environ, LIGHTLLM_SANITIZE="1", LIGHTLLM_CUDA="0")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(lib), "--build-temp",
                    str(tmp_path / "tmp"), "--parallel", "2"], cwd=ROOT, env=env, check=True, capture_output=True)
    for f in os.listdir(os.path.join(ROOT, "lightllm")):
        if f.endswith(".py"):
            shutil.copy(os.path.join(ROOT, "lightllm", f), lib / "lightllm" / f)
    run_env = dict(os.environ, LD_PRELOAD=f"{asan}:{ubsan}", PYTHONPATH=str(lib),
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    r = subprocess.run([sys.executable, "-c", SCRIPT, os.path.join(ROOT, "tests", "fixtures", "qwen3")], cwd=str(tmp_path),
                       env=run_env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "sanitized generation ok" in r.stdout, r.stdout[-3000:] + r.stderr[-6000:]
    assert "runtime error" not in r.stderr, r.stderr[-6000:]
