"""Bad checkpoints and bad requests fail with errors that name the problem; nothing leaks."""
import json
import os
import shutil

import pytest
from safetensors.numpy import load_file, save_file

from conftest import load_fixture
from lightllm import LLM, SamplingParams, _C


def copy_fixture(tmp_path, name="qwen3"):
    d = tmp_path / name
    shutil.copytree(load_fixture(name)[0], d)
    return d


def edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def test_unsupported_architecture_lists_supported(tmp_path):
    d = copy_fixture(tmp_path)
    edit_config(d, architectures=["GPT2LMHeadModel"])
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel.*LlamaForCausalLM.*Qwen2ForCausalLM.*Qwen3ForCausalLM.*Mistral"):
        LLM(str(d))


def test_missing_tensor_names_tensor(tmp_path):
    d = copy_fixture(tmp_path, "llama_yarn")  # F32 weights: numpy reads them without ml_dtypes
    t = load_file(str(d / "model.safetensors"))
    del t["model.layers.1.mlp.up_proj.weight"]
    save_file(t, str(d / "model.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        LLM(str(d))


def test_wrong_shape_names_tensor_and_file(tmp_path):
    d = copy_fixture(tmp_path)
    edit_config(d, intermediate_size=96)
    with pytest.raises(RuntimeError, match=r"mlp\.gate_proj\.weight in .*model\.safetensors has shape \[160, 64\]; config.json implies \[96, 64\]"):
        LLM(str(d))


def test_wrong_dtype_is_refused(tmp_path):
    d = copy_fixture(tmp_path, "llama_yarn")
    t = load_file(str(d / "model.safetensors"))
    t["model.norm.weight"] = t["model.norm.weight"].astype("int32")
    save_file(t, str(d / "model.safetensors"))
    with pytest.raises(RuntimeError, match=r"model\.norm\.weight.*I32"):
        LLM(str(d))


def test_truncated_file_names_file(tmp_path):
    d = copy_fixture(tmp_path)
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])
    with pytest.raises(RuntimeError, match=r"model\.safetensors is truncated"):
        LLM(str(d))


def test_missing_shard_names_file(tmp_path):
    d = copy_fixture(tmp_path, "llama")
    os.remove(d / "model-00002-of-00003.safetensors")
    with pytest.raises(FileNotFoundError, match=r"model-00002-of-00003\.safetensors"):
        LLM(str(d))


def test_missing_config_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LLM(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        LLM(str(tmp_path))


def test_mistral_sliding_window_refused(tmp_path):
    d = copy_fixture(tmp_path, "mistral")
    edit_config(d, sliding_window=64)
    with pytest.raises(RuntimeError, match=r"sliding_window=64.*not supported"):
        LLM(str(d))


def test_unsupported_rope_type(tmp_path):
    d = copy_fixture(tmp_path, "qwen3")
    edit_config(d, rope_parameters={"rope_type": "longrope", "rope_theta": 1e6})
    with pytest.raises(ValueError, match="longrope"):
        LLM(str(d))


@pytest.fixture(scope="module")
def llm():
    return LLM(load_fixture("qwen3")[0], max_total_token_num=64, max_model_len=48)


@pytest.mark.parametrize("prompt, match", [
    ({"prompt_token_ids": []}, "empty"),
    ({"prompt_token_ids": [1, 2, 384]}, r"token id 384 at index 2 is outside the vocabulary \[0, 384\)"),
    ({"prompt_token_ids": [1, -1]}, "outside the vocabulary"),
    ({"prompt_token_ids": [1] * 48}, "max_model_len"),
    ({"prompt_token_ids": [1, "x"]}, r"prompt_token_ids\[1\]"),
    ("text without tokenizer", "tokenizer"),
    (3.5, "must be a str"),
])
def test_bad_prompts(llm, prompt, match):
    with pytest.raises(ValueError, match=match):
        llm.generate(prompt, SamplingParams(max_tokens=2), use_tqdm=False)
    out = llm.generate({"prompt_token_ids": [1, 2, 3]}, SamplingParams(max_tokens=2), use_tqdm=False)[0]
    assert out.finished  # the engine keeps serving
    st = llm.stats()
    assert st["num_free_slots"] + st["num_cached_slots"] == 64


def test_stop_token_id_outside_vocab(llm):
    with pytest.raises(ValueError, match="stop_token_ids"):
        llm.generate({"prompt_token_ids": [1, 2]}, SamplingParams(stop_token_ids=[99999]), use_tqdm=False)


def test_mismatched_params_list(llm):
    with pytest.raises(ValueError, match="2 prompts but 1 sampling_params"):
        llm.generate([[1, 2], [3, 4]], [SamplingParams()], use_tqdm=False)


def test_bad_engine_args():
    d = load_fixture("qwen3")[0]
    with pytest.raises(ValueError, match="max_model_len"):
        LLM(d, max_model_len=100000)
    with pytest.raises(ValueError, match="device"):
        LLM(d, device="tpu")
    if not _C.WITH_CUDA:
        with pytest.raises(ValueError, match="no CUDA backend"):
            LLM(d, device="cuda")
