"""Scheduler and engine behaviour through the Python API: continuous batching under KV
pressure (pause + recompute), n samples sharing the prompt, seeds, aborts, stats."""
import pytest

from conftest import load_fixture
from lightllm import LLM, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True)


@pytest.fixture(scope="module")
def qwen3():
    return load_fixture("qwen3")


def prompts_of(n, length, salt=0):
    return [[3 + ((i + 1) * 37 + j * 11 + salt) % 370 for j in range(length)] for i in range(n)]


def run(llm, prompts, sp):
    return [o.outputs[0] for o in llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)]


@pytest.mark.parametrize("estimate_cap", [0, 4])
def test_twenty_requests_through_a_64_token_pool(qwen3, estimate_cap):
    """20 requests x 40 tokens (8 prompt + 32 output) through 64 KV slots all finish, with the
    same greedy tokens as alone. estimate_cap=4 makes admission optimistic so sequences must be
    paused and recomputed (preemption)."""
    d = qwen3[0]
    prompts = prompts_of(20, 8)
    want = [o.token_ids for o in run(LLM(d), prompts, GREEDY)]
    llm = LLM(d, max_total_token_num=64, max_num_seqs=8, max_num_batched_tokens=64, router_max_new_token_len=estimate_cap)
    outs = run(llm, prompts, GREEDY)
    assert [o.finish_reason for o in outs] == ["length"] * 20
    assert [o.token_ids for o in outs] == want
    st = llm.stats()
    assert st["num_running"] == 0 and st["num_waiting"] == 0
    assert st["num_free_slots"] + st["num_cached_slots"] == 64  # nothing leaked
    if estimate_cap:
        assert st["num_preemptions"] > 0


def test_kv_returns_to_pool_without_prefix_cache(qwen3):
    llm = LLM(qwen3[0], max_total_token_num=100, enable_prefix_caching=False)
    run(llm, prompts_of(5, 9), GREEDY)
    assert llm.stats()["num_free_slots"] == 100


def test_request_longer_than_pool_ends_with_length(qwen3):
    llm = LLM(qwen3[0], max_total_token_num=24)
    out = run(llm, prompts_of(1, 10), SamplingParams(temperature=0, max_tokens=100, ignore_eos=True))[0]
    assert out.finish_reason == "length" and len(out.token_ids) == 15  # 24 slots hold 10 prompt + 14 outputs; the last needs none
    assert llm.stats()["num_free_slots"] + llm.stats()["num_cached_slots"] == 24


def test_n_samples_share_the_prompt_and_differ(qwen3):
    llm = LLM(qwen3[0])
    prompt = prompts_of(1, 40)[0]
    out = llm.generate({"prompt_token_ids": prompt}, SamplingParams(n=4, temperature=1.0, seed=7, max_tokens=16,
                                                                     ignore_eos=True), use_tqdm=False)[0]
    assert [c.index for c in out.outputs] == [0, 1, 2, 3]
    assert len({tuple(c.token_ids) for c in out.outputs}) == 4
    # samples 1..3 reuse sample 0's prompt KV: 3 x 39 cached prompt tokens
    assert llm.stats()["num_cached_prompt_tokens"] >= 3 * 39


def test_seed_gives_same_tokens_regardless_of_batch(qwen3):
    llm = LLM(qwen3[0])
    sp = SamplingParams(temperature=1.0, top_p=0.95, seed=1234, max_tokens=24, ignore_eos=True)
    alone = run(llm, prompts_of(1, 12), sp)[0].token_ids
    crowd = run(llm, prompts_of(6, 12, salt=5) + prompts_of(1, 12), [SamplingParams(temperature=1.0, max_tokens=30,
                ignore_eos=True)] * 6 + [sp])
    assert crowd[-1].token_ids == alone
    other_seed = run(llm, prompts_of(1, 12), SamplingParams(temperature=1.0, top_p=0.95, seed=99, max_tokens=24, ignore_eos=True))
    assert other_seed[0].token_ids != alone


def test_unseeded_requests_differ(qwen3):
    llm = LLM(qwen3[0])
    sp = SamplingParams(temperature=1.0, max_tokens=24, ignore_eos=True)
    a, b = run(llm, prompts_of(1, 12) * 2, sp)
    assert a.token_ids != b.token_ids


def test_abort_frees_kv(qwen3):
    llm = LLM(qwen3[0], max_total_token_num=200, enable_prefix_caching=False)
    eng = llm._engine
    eng.add_request(1000, prompts_of(1, 10)[0], SamplingParams(max_tokens=50, ignore_eos=True).engine_dict())
    eng.step()
    eng.step()
    assert llm.stats()["num_free_slots"] < 200
    assert eng.abort(1000)
    updates = eng.step()
    assert [(u[0], u[6]) for u in updates] == [(1000, "abort")]
    assert not eng.has_unfinished() and llm.stats()["num_free_slots"] == 200
    assert not eng.abort(1000)


def test_duplicate_request_id_is_refused(qwen3):
    eng = LLM(qwen3[0])._engine
    eng.add_request(5, [1, 2, 3], SamplingParams().engine_dict())
    with pytest.raises(ValueError, match="already running"):
        eng.add_request(5, [1, 2, 3], SamplingParams().engine_dict())


def test_metrics_and_cached_tokens_reported(qwen3):
    llm = LLM(qwen3[0])
    p = prompts_of(1, 30)
    run(llm, p, GREEDY)
    out = llm.generate({"prompt_token_ids": p[0]}, GREEDY, use_tqdm=False)[0]
    m = out.metrics
    assert m.num_cached_tokens == 29
    assert m.arrival_time <= m.first_token_time <= m.finished_time


def test_kv_pool_sized_by_mem_fraction(qwen3):
    """kv_cache_memory_bytes=0: the pool takes free memory less activations and the kept-back share
    (here host RAM: the CPU backend's memory), capped at max_num_seqs x max_model_len."""
    llm = LLM(qwen3[0], kv_cache_memory_bytes=0, mem_fraction=0.9, max_num_seqs=4)
    assert llm.stats()["num_kv_slots"] == 4 * 256
    with pytest.raises(MemoryError, match="no memory is left for the KV cache"):
        LLM(qwen3[0], kv_cache_memory_bytes=0, mem_fraction=1e-6)
    with pytest.raises(ValueError, match="mem_fraction"):
        LLM(qwen3[0], kv_cache_memory_bytes=0, mem_fraction=1.5)
