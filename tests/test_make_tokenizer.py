"""benchmarks/make_tokenizer.py: Qwen3's vocabulary cut to Llama-3.1's 128,256 ids is a working
tokenizer of exactly that size (ids in range, text round-trips, specials at the top) that the
engine serves a 128,256-vocabulary model with."""
import json
import os
import subprocess
import sys

import pytest
from conftest import shared_path

tokenizers = pytest.importorskip("tokenizers")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cut_qwen3_to_llama3_size(tmp_path):
    src = shared_path("tokenizers", "qwen3")
    subprocess.check_call([sys.executable, os.path.join(ROOT, "benchmarks", "make_tokenizer.py"), "--src", src,
                           "--vocab-size", "128256", "--out", str(tmp_path)])
    tok = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == 128256
    text = "Serving benchmarks, 2026: naïve café — 你好，世界 🙂 <|im_end|>"
    ids = tok.encode(text).ids
    assert max(ids) < 128256 and tok.decode(ids, skip_special_tokens=False) == text
    assert tok.token_to_id("<|im_end|>") >= 128256 - 26
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "chat_template" in cfg and "added_tokens_decoder" not in cfg
    model = tmp_path / "m"
    model.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (model / f).write_bytes((tmp_path / f).read_bytes())
    (model / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "vocab_size": 128256, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5, "eos_token_id": 128001}))
    from lightllm import LLM, SamplingParams
    llm = LLM(str(model), load_format="dummy", max_model_len=128, max_num_seqs=2, device="cpu")
    out = llm.generate([text], SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))[0].outputs[0]
    assert len(out.token_ids) == 4 and all(0 <= t < 128256 for t in out.token_ids)
