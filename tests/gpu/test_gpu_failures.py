"""The CUDA backend's failure paths (issue 3, "bad input and failure"): a model that does not fit
fails at load with the bytes needed and free, and leaves the device as it found it; a device error
in the middle of serving (a sticky one: a device-side assert raised by another library in the
same process, which poisons the CUDA context) is reported naming the failing call, and the engine
then refuses further work with that error instead of producing tokens."""
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import FIXTURE_NAMES, load_fixture  # noqa: E402
from lightllm import LLM, _C  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not (_C.WITH_CUDA and _C.cuda_device_count() > 0), reason="needs a CUDA build and a GPU")]


def _used_bytes():
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) << 20


def test_model_too_large_fails_at_load_naming_the_bytes():
    # a Llama shape of ~1.1 TB of bf16 weights (no card holds it), dummy weights
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=16384, intermediate_size=53248,
               num_hidden_layers=160, num_attention_heads=128, num_key_value_heads=8, vocab_size=128256,
               max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=500000.0, torch_dtype="bfloat16")
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        used_before = _used_bytes()
        with pytest.raises(MemoryError, match=r"weights need \d+ bytes of device memory \(cuda backend\), \d+ of \d+ bytes are free"):
            LLM(d, load_format="dummy", device="cuda", max_model_len=1024)
    # it failed before allocating the weights: nothing is held (within the allocator's slack)
    assert _used_bytes() - used_before < (1 << 30)


_STICKY = r"""
import sys, torch
from lightllm import LLM, SamplingParams
llm = LLM(sys.argv[1], device="cuda")
p = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
ok = llm.generate([{"prompt_token_ids": [5, 6, 7]}], p, use_tqdm=False)[0].outputs[0].token_ids
assert len(ok) == 8, ok
x = torch.zeros(4, device="cuda")
try:  # an out-of-range index: a device-side assert, sticky for the process's CUDA context
    x[torch.tensor([1 << 20], device="cuda")].sum().item()
except RuntimeError as e:
    print("torch:", str(e).splitlines()[0])
for attempt in range(2):
    try:
        out = llm.generate([{"prompt_token_ids": [5, 6, 7]}], p, use_tqdm=False)
        print("TOKENS", out[0].outputs[0].token_ids)
    except Exception as e:
        print("REFUSED", type(e).__name__, str(e).replace("\n", " ")[:400])
sys.stdout.flush()
import os
os._exit(0)   # skip teardown in a poisoned context
"""


def test_device_error_is_reported_and_refuses_further_work():
    pytest.importorskip("torch")
    d, _, _ = load_fixture(FIXTURE_NAMES[0])
    r = subprocess.run([sys.executable, "-c", _STICKY, d], capture_output=True, text=True, timeout=150)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("REFUSED", "TOKENS"))]
    assert len(lines) == 2, r.stdout + r.stderr
    names = []
    for ln in lines:   # both calls refuse, with the CUDA call that failed and the error's name
        assert ln.startswith("REFUSED"), r.stdout + r.stderr
        assert re.search(r"cuda\w+(\([^)]*\))? failed: .*\(cudaError\w+\)", ln), ln
        names.append(re.findall(r"cudaError\w+", ln))
    assert names[0] and names[0] == names[1], lines   # the same recorded error, not a new one
