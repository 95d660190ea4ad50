"""Every sampling parameter through LLM.generate with a clear expected effect (the C unit tests
in tests/c/test_sampling.c check the sampler's distributions exactly)."""
import json
import math
import shutil

import numpy as np
import pytest

from conftest import load_fixture, tiny_qwen3_dir
from lightllm import LLM, SamplingParams


@pytest.fixture(scope="module")
def fx():
    d, ref, _ = load_fixture("qwen3")
    return LLM(d), ref


def gen(llm, prompt, **kw):
    return llm.generate({"prompt_token_ids": prompt}, SamplingParams(**kw), use_tqdm=False)[0].outputs


def test_greedy_and_top_k_1_are_argmax(fx):
    llm, ref = fx
    p = ref["prompts"][2]
    first = int(np.argmax(llm.prompt_logits(p)[-1]))
    g = gen(llm, p, temperature=0, max_tokens=8, ignore_eos=True)[0]
    assert g.token_ids[0] == first and g.token_ids == ref["greedy"][2][:8]
    assert gen(llm, p, temperature=1.0, top_k=1, max_tokens=8, ignore_eos=True, seed=3)[0].token_ids == g.token_ids


def test_temperature_spreads_choices(fx):
    llm, ref = fx
    p = ref["prompts"][1]
    firsts = lambda t: {gen(llm, p, temperature=t, max_tokens=1, seed=s)[0].token_ids[0] for s in range(40)}
    assert len(firsts(1e-4)) == 1 and len(firsts(5.0)) > 10


def test_top_k_limits_first_token(fx):
    llm, ref = fx
    p = ref["prompts"][1]
    top3 = set(np.argsort(-llm.prompt_logits(p)[-1])[:3].tolist())
    seen = {gen(llm, p, temperature=2.0, top_k=3, max_tokens=1, seed=s)[0].token_ids[0] for s in range(60)}
    assert seen <= top3 and len(seen) >= 2


def test_top_p_and_min_p_limit_first_token(fx):
    llm, ref = fx
    p = ref["prompts"][1]
    logits = llm.prompt_logits(p)[-1].astype(np.float64)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    order = np.argsort(-probs)
    nucleus = set(order[: int(np.searchsorted(np.cumsum(probs[order]), 0.3) + 1)].tolist())
    seen = {gen(llm, p, temperature=1.0, top_p=0.3, max_tokens=1, seed=s)[0].token_ids[0] for s in range(60)}
    assert seen <= nucleus
    keep = set(np.nonzero(probs >= 0.5 * probs.max())[0].tolist())
    seen = {gen(llm, p, temperature=1.0, min_p=0.5, max_tokens=1, seed=s)[0].token_ids[0] for s in range(60)}
    assert seen <= keep


def repeats(ids):
    return len(ids) - len(set(ids))


def test_penalties_reduce_repetition(fx):
    llm, ref = fx
    p = ref["prompts"][3]  # 64 greedy tokens run into their own cycle: 7 repeats
    base = gen(llm, p, temperature=0, max_tokens=64, ignore_eos=True)[0].token_ids
    assert repeats(base) > 5
    for kw in ({"repetition_penalty": 3.0}, {"presence_penalty": 2.0}, {"frequency_penalty": 2.0}):
        ids = gen(llm, p, temperature=0, max_tokens=64, ignore_eos=True, **kw)[0].token_ids
        assert repeats(ids) < repeats(base), kw
    # repetition_penalty also counts prompt tokens: the prompt's own token becomes less likely
    more = gen(llm, p, temperature=0, max_tokens=64, ignore_eos=True, repetition_penalty=0.5)[0].token_ids
    assert repeats(more) >= repeats(base)


def test_max_tokens_and_stop_token_ids_and_min_tokens(fx):
    llm, ref = fx
    p, want = ref["prompts"][3], ref["greedy"][3]
    out = gen(llm, p, temperature=0, max_tokens=5, ignore_eos=True)[0]
    assert out.token_ids == want[:5] and out.finish_reason == "length"
    stop_id = want[4]
    out = gen(llm, p, temperature=0, max_tokens=32, ignore_eos=True, stop_token_ids=[stop_id])[0]
    k = want.index(stop_id)
    assert out.token_ids == want[: k + 1] and out.finish_reason == "stop" and out.stop_reason == stop_id
    out = gen(llm, p, temperature=0, max_tokens=32, ignore_eos=True, stop_token_ids=[want[0]], min_tokens=3)[0]
    assert out.token_ids[0] != want[0] and len(out.token_ids) >= 3


def eos_model(tmp_path, ref_dir, eos):
    d = tmp_path / "m"
    shutil.copytree(ref_dir, d)
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    return str(d)


def test_eos_ignore_eos_and_min_tokens(tmp_path):
    d, ref, _ = load_fixture("qwen3")
    first = ref["greedy"][3][0]
    llm = LLM(eos_model(tmp_path, d, [first]))
    p = ref["prompts"][3]
    out = gen(llm, p, temperature=0, max_tokens=32)[0]
    assert out.token_ids == [first] and out.finish_reason == "stop" and out.stop_reason is None
    out = gen(llm, p, temperature=0, max_tokens=32, ignore_eos=True)[0]
    assert out.token_ids == ref["greedy"][3] and out.finish_reason == "length"
    out = gen(llm, p, temperature=0, max_tokens=32, min_tokens=4)[0]
    assert first not in out.token_ids[:4] and len(out.token_ids) >= 4


def test_logprobs_are_raw_log_softmax(fx):
    llm, ref = fx
    p = ref["prompts"][2]
    logits = llm.prompt_logits(p)[-1].astype(np.float64)
    lsm = logits - logits.max() - math.log(np.exp(logits - logits.max()).sum())
    out = gen(llm, p, temperature=0.8, max_tokens=4, seed=1, logprobs=3, ignore_eos=True)[0]
    assert len(out.logprobs) == 4
    first = out.logprobs[0]
    tok = out.token_ids[0]
    assert abs(first[tok].logprob - lsm[tok]) < 1e-4
    top = np.argsort(-lsm)[:3].tolist()
    assert [first[i].rank for i in top] == [1, 2, 3]
    assert first[tok].rank == 1 + int((lsm > lsm[tok]).sum())
    for lp, t in zip(out.logprobs, out.token_ids):
        assert len(lp) in (3, 4) and lp[t].rank >= 1  # top-3 plus the sampled token when outside it
    assert abs(out.cumulative_logprob - sum(lp[t].logprob for lp, t in zip(out.logprobs, out.token_ids))) < 1e-4
    assert gen(llm, p, max_tokens=2, logprobs=None)[0].logprobs is None


@pytest.mark.parametrize("kw, field", [
    ({"temperature": -1}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"top_k": -2}, "top_k"), ({"min_p": 2.0}, "min_p"), ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"presence_penalty": 3.0}, "presence_penalty"), ({"frequency_penalty": -2.5}, "frequency_penalty"),
    ({"max_tokens": 0}, "max_tokens"), ({"min_tokens": -1}, "min_tokens"), ({"min_tokens": 9, "max_tokens": 4}, "min_tokens"),
    ({"n": 0}, "n"), ({"logprobs": 21}, "logprobs"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": "hot"}, "temperature"), ({"stop": [""]}, "stop"), ({"stop": [3]}, "stop"),
])
def test_invalid_values_name_the_parameter(kw, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**kw)


def test_stop_strings_with_real_tokenizer(tmp_path):
    """Dummy-weight Qwen3-shaped model with the real Qwen3 vocabulary: text is exactly the HF
    decode of the tokens, stop strings cut the text (or keep it with include_stop_str_in_output)."""
    llm = LLM(tiny_qwen3_dir(tmp_path / "qwen3-tiny", 512), load_format="dummy")
    tk = llm.get_tokenizer()
    outs = llm.generate(["你好, world! 🚀"] * 3, [SamplingParams(temperature=1.0, max_tokens=48, seed=s, ignore_eos=True)
                                              for s in range(3)], use_tqdm=False)
    for o in outs:
        c = o.outputs[0]
        assert c.text == tk.decode(c.token_ids)
    text = outs[0].outputs[0].text
    stop = text[10:14]
    cut = gen(llm, outs[0].prompt_token_ids, temperature=1.0, max_tokens=48, seed=0, ignore_eos=True, stop=[stop])[0]
    assert cut.finish_reason == "stop" and cut.stop_reason == stop and cut.text == text[: text.index(stop)]
    keep = gen(llm, outs[0].prompt_token_ids, temperature=1.0, max_tokens=48, seed=0, ignore_eos=True, stop=stop,
               include_stop_str_in_output=True)[0]
    assert keep.text == text[: text.index(stop) + len(stop)]
    chat = llm.chat([{"role": "user", "content": "Say hi"}], SamplingParams(max_tokens=4, temperature=0), use_tqdm=False)[0]
    assert chat.prompt.startswith("<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n")
    assert chat.prompt_token_ids == tk.encode(chat.prompt, add_special_tokens=False)
