import json
import os
import shutil

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SHARED = os.path.join(ROOT, "..", "shared")
FIXTURE_NAMES = sorted(d for d in os.listdir(FIXTURES) if os.path.exists(os.path.join(FIXTURES, d, "reference.json")))


def load_fixture(name):
    d = os.path.join(FIXTURES, name)
    with open(os.path.join(d, "reference.json")) as f:
        ref = json.load(f)
    logits = np.load(os.path.join(d, ref["logits_file"]))
    return d, ref, [logits[k] for k in ref["logits_keys"]]


def shared_path(*parts):
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        pytest.skip(f"{p} is not available")
    return p


def tiny_qwen3_dir(d, max_len):
    """A dummy-weight Qwen3-shaped model (1 layer, hidden 64) with the real Qwen3 tokenizer
    (151,936 ids) written to the directory d (a pathlib.Path, created); returns it as str."""
    tok = shared_path("tokenizers", "qwen3")
    d.mkdir(parents=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok, f), d / f)
    cfg = {"architectures": ["Qwen3ForCausalLM"], "vocab_size": 151936, "hidden_size": 64, "intermediate_size": 128,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
           "max_position_embeddings": max_len, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": True,
           "eos_token_id": 151645}
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)
