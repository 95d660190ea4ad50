"""config.json / generation_config.json → the flat dict the C core takes (model_config_t).

Both spellings of rotary settings are read: rope_theta + rope_scaling (published checkpoints)
and rope_parameters (transformers >= 5). Anything we cannot run exactly is refused by name."""
import json
import os

SUPPORTED = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM")
_ROPE_KEYS = {"factor": "rope_factor", "low_freq_factor": "rope_low_freq_factor",
              "high_freq_factor": "rope_high_freq_factor", "original_max_position_embeddings": "rope_original_max_position",
              "beta_fast": "rope_beta_fast", "beta_slow": "rope_beta_slow", "attention_factor": "rope_attention_factor",
              "mscale": "rope_mscale", "mscale_all_dim": "rope_mscale_all_dim", "truncate": "rope_truncate"}


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _rope(hf):
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and all(isinstance(v, dict) for v in params.values()) and params:
        raise ValueError("config.json: per-layer-type rope_parameters are not supported")
    if params is None:
        params = dict(hf.get("rope_scaling") or {})
        params.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind not in ("default", "linear", "llama3", "yarn"):
        raise ValueError(f"config.json: rope scaling type {kind!r} is not supported; supported: default, linear, llama3, yarn")
    if float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))) != 1.0:
        raise ValueError("config.json: partial_rotary_factor != 1 is not supported")
    out = {"rope_type": kind, "rope_theta": float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))}
    for key, name in _ROPE_KEYS.items():
        if params.get(key) is not None:
            out[name] = int(params[key]) if name in ("rope_original_max_position", "rope_truncate") else float(params[key])
    return out


def model_config(hf):
    """Flat C config dict from a parsed config.json."""
    archs = hf.get("architectures") or []
    if not archs:
        raise ValueError("config.json: 'architectures' is missing; supported: " + ", ".join(SUPPORTED))
    arch = archs[0]
    if arch not in SUPPORTED:
        raise ValueError(f"config.json: unsupported architecture {arch}; supported: " + ", ".join(SUPPORTED))
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"config.json: hidden_act {act!r} is not supported; supported: silu")
    if hf.get("mlp_bias"):
        raise ValueError("config.json: mlp_bias=true is not supported")
    if hf.get("attention_bias") and arch != "Qwen2ForCausalLM":
        raise ValueError("config.json: attention_bias=true is not supported for " + arch)
    heads = int(hf["num_attention_heads"])
    window = hf.get("sliding_window")
    if arch != "MistralForCausalLM" and not hf.get("use_sliding_window", False):
        window = None
    cfg = {
        "architecture": arch, "vocab_size": int(hf["vocab_size"]), "hidden_size": int(hf["hidden_size"]),
        "intermediate_size": int(hf["intermediate_size"]), "num_layers": int(hf["num_hidden_layers"]),
        "num_heads": heads, "num_kv_heads": int(hf.get("num_key_value_heads") or heads),
        "head_dim": int(hf.get("head_dim") or int(hf["hidden_size"]) // heads),
        "max_position_embeddings": int(hf.get("max_position_embeddings", 4096)),
        "sliding_window": int(window or 0), "rms_norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "tie_word_embeddings": int(bool(hf.get("tie_word_embeddings", False))),
        "qkv_bias": int(arch == "Qwen2ForCausalLM"), "qk_norm": int(arch == "Qwen3ForCausalLM"),
    }
    cfg.update(_rope(hf))
    return cfg


def load_model_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: a model directory needs config.json")
    return model_config(_read_json(path))


def _ids(value):
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


def load_generation_config(model_dir):
    """generation_config.json (if any) + config.json eos ids → (eos_ids, sampling defaults)."""
    gen, hf = {}, {}
    if model_dir and os.path.exists(os.path.join(model_dir, "generation_config.json")):
        gen = _read_json(os.path.join(model_dir, "generation_config.json"))
    if model_dir and os.path.exists(os.path.join(model_dir, "config.json")):
        hf = _read_json(os.path.join(model_dir, "config.json"))
    eos = _ids(gen.get("eos_token_id")) or _ids(hf.get("eos_token_id"))
    defaults = {k: gen[k] for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty") if gen.get(k) is not None}
    if gen.get("do_sample") is False:
        defaults["temperature"] = 0.0
    if gen.get("max_new_tokens") is not None:
        defaults["max_tokens"] = int(gen["max_new_tokens"])
    return eos, defaults


# The built-in demo model: a byte-level vocabulary (256 bytes + <|bos|> + <|eos|>) and seeded
# random weights in the Llama layout — no files, deterministic output.
DEMO_CONFIG = {
    "architecture": "LlamaForCausalLM", "vocab_size": 258, "hidden_size": 128, "intermediate_size": 256,
    "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "max_position_embeddings": 2048,
    "sliding_window": 0, "rms_norm_eps": 1e-5, "tie_word_embeddings": 1, "qkv_bias": 0, "qk_norm": 0,
    "rope_type": "default", "rope_theta": 10000.0,
}
