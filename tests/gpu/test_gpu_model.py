"""Whole models on the CUDA backend (bf16) against Hugging Face transformers (the fixtures) and
against themselves: logits close, >= 95% of greedy tokens before the first divergence, greedy
output independent of batch composition, chunked prefill and the prefix cache (up to the first
bf16 tie) and of CUDA graphs (exactly); the
device sampler gives the host sampler's tokens and logprobs on the same model."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import FIXTURE_NAMES, load_fixture  # noqa: E402
from lightllm import LLM, SamplingParams, _C  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not (_C.WITH_CUDA and _C.cuda_device_count() > 0), reason="needs a CUDA build and a GPU")]
GREEDY = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True)


def greedy(llm, prompts):
    return [o.outputs[0].token_ids for o in llm.generate([{"prompt_token_ids": p} for p in prompts], GREEDY, use_tqdm=False)]


def agreement(got, want):
    """Fraction of tokens before the first divergence, over all prompts."""
    same = 0
    for g, w in zip(got, want):
        k = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), len(w))
        same += k
    return same / sum(len(w) for w in want)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_gpu_logits_close_to_transformers(name):
    d, ref, logits = load_fixture(name)
    llm = LLM(d, device="cuda")
    for ids, want in zip(ref["prompts"], logits):
        got = llm.prompt_logits(ids)
        assert np.isfinite(got).all()
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 5e-2, f"{name}: bf16 logits max normalised error {err:.3e} on a {len(ids)}-token prompt"


# bf16 logit error on the earlier fixtures was ~0.02 of max|logit| (~0.03 absolute): a reference step
# whose top-2 gap is below this is a tie at bf16 resolution.
BF16_TIE_GAP = 0.05


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_gpu_greedy_agrees_with_transformers(name):
    """Teacher-forced: along transformers' greedy path, our argmax equals its token at every step
    that is not a bf16-resolution tie. Free-running: >= 95% of the greedy tokens come before the
    first divergence (the issue's criterion). The fixtures' seeds were chosen for it: their smallest
    top-2 gap is several times the bf16 logit error and the model run in bfloat16 by transformers
    on the CPU gives the float32 greedy tokens exactly (reference.json "robustness")."""
    d, ref, _ = load_fixture(name)
    llm = LLM(d, device="cuda")
    checked = 0
    for p, want, gaps in zip(ref["prompts"], ref["greedy"], ref["greedy_top2_gaps"]):
        logits = llm.prompt_logits(p + want[:-1])[len(p) - 1:]
        for step, (row, tok, gap) in enumerate(zip(logits, want, gaps)):
            if gap >= BF16_TIE_GAP:
                assert int(np.argmax(row)) == tok, f"{name}: step {step} (gap {gap:.3f}) argmax {np.argmax(row)} != {tok}"
                checked += 1
    free = agreement(greedy(llm, ref["prompts"]), ref["greedy"])
    print(f"{name}: {checked} non-tie steps agree; free-running {free:.3f} of tokens before the first divergence")
    assert checked >= 0.5 * sum(len(w) for w in ref["greedy"])
    assert free >= 0.95, f"{name}: free-running greedy agreement {free:.3f} < 0.95"


GREEDY_TOP2 = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True, logprobs=2)


def assert_same_until_tie(got, base, what):
    """got[i] equals base[i]'s tokens, or first differs at a step where base's top-2 logit gap
    is below bf16 resolution (BF16_TIE_GAP): the two runs rounded the same logits differently
    (a decode batch of <= 8 rows runs kernels_gemv, a larger one cuBLASLt), not a wrong token."""
    for i, (g, b) in enumerate(zip(got, base)):
        k = next((j for j, (x, y) in enumerate(zip(g, b.token_ids)) if x != y), None)
        if k is None:
            assert len(g) == len(b.token_ids), f"{what}: prompt {i} length {len(g)} != {len(b.token_ids)}"
            continue
        top = sorted((lp.logprob for lp in b.logprobs[k].values()), reverse=True)
        gap = top[0] - top[1]
        assert gap < BF16_TIE_GAP, f"{what}: prompt {i} differs at step {k} where the top-2 gap is {gap:.3f}"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_gpu_greedy_invariant_to_batch_chunking_prefix_cache(name):
    """Greedy tokens do not depend on the batch a prompt runs in, chunked prefill or the prefix
    cache, up to the first bf16-resolution tie."""
    d, ref, _ = load_fixture(name)
    base = [o.outputs[0] for o in LLM(d, device="cuda", enable_prefix_caching=False).generate(
        [{"prompt_token_ids": p} for p in ref["prompts"]], GREEDY_TOP2, use_tqdm=False)]
    alone_llm = LLM(d, device="cuda", enable_prefix_caching=False)
    assert_same_until_tie([greedy(alone_llm, [p])[0] for p in ref["prompts"]], base, f"{name} alone")
    chunked = LLM(d, device="cuda", chunked_prefill_size=5, max_num_batched_tokens=16, max_num_seqs=8)
    assert_same_until_tie(greedy(chunked, ref["prompts"]), base, f"{name} chunked")
    cached = LLM(d, device="cuda")
    greedy(cached, ref["prompts"])
    assert_same_until_tie(greedy(cached, ref["prompts"]), base, f"{name} prefix-cached")


SAMPLED = [SamplingParams(temperature=0.9, top_p=0.9, top_k=50, seed=1, max_tokens=24, ignore_eos=True, logprobs=5),
           SamplingParams(temperature=1.0, min_p=0.05, repetition_penalty=1.2, presence_penalty=0.5,
                          frequency_penalty=0.3, seed=2, max_tokens=24, ignore_eos=True, logprobs=0),
           SamplingParams(temperature=0.0, max_tokens=24, min_tokens=24, logprobs=3)]


@pytest.mark.parametrize("name", FIXTURE_NAMES[:3])
def test_gpu_device_sampler_matches_host_sampler(name, monkeypatch):
    """backend_ops.sample on the device (kernels_sampling, the default) and on the host
    (LIGHTLLM_HOST_SAMPLING=1: the CPU sampler over the same logits) pick the same tokens with
    the same logprobs, for seeded top-k/top-p, min-p with all three penalties, and greedy with
    EOS banned until min_tokens, batched over the fixture's prompts."""
    d, ref, _ = load_fixture(name)
    runs = {}
    for host in ("0", "1"):
        monkeypatch.setenv("LIGHTLLM_HOST_SAMPLING", host)
        llm = LLM(d, device="cuda")
        runs[host] = [[o.outputs[0] for o in llm.generate([{"prompt_token_ids": p} for p in ref["prompts"]], sp,
                                                          use_tqdm=False)] for sp in SAMPLED]
    for sp, dev, hst in zip(SAMPLED, runs["0"], runs["1"]):
        for a, b in zip(dev, hst):
            assert a.token_ids == b.token_ids, f"{name} {sp}: device {a.token_ids} != host {b.token_ids}"
            for step, (x, y) in enumerate(zip(a.logprobs, b.logprobs)):
                assert x.keys() == y.keys(), f"{name} {sp} step {step}: top ids {list(x)} != {list(y)}"
                for tok in x:
                    assert abs(x[tok].logprob - y[tok].logprob) < 1e-4 and x[tok].rank == y[tok].rank


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_gpu_greedy_same_with_and_without_cuda_graphs(name, monkeypatch):
    """Decode steps replayed as CUDA graphs (padded to a batch bucket, KV length to a bucket)
    give the eager forward's greedy tokens, batched (bucket 4) and alone (bucket 1); the graphs
    did run."""
    d, ref, _ = load_fixture(name)
    runs = {}
    for graphs in ("0", "1"):
        monkeypatch.setenv("LIGHTLLM_CUDA_GRAPHS", graphs)
        llm = LLM(d, device="cuda", enable_prefix_caching=False)
        runs[graphs] = greedy(llm, ref["prompts"]) + [greedy(llm, [p])[0] for p in ref["prompts"][:2]]
        replays = llm.stats()["num_graph_replays"]
        assert (replays > 0) == (graphs == "1"), replays
    assert runs["1"] == runs["0"]


@pytest.mark.parametrize("name", FIXTURE_NAMES[:3])
def test_gpu_greedy_same_with_and_without_pdl(name, monkeypatch):
    """The decode GEMVs launched by programmatic dependent launch (LIGHTLLM_PDL=1, the default:
    first weight loads before griddepcontrol.wait, early triggers in the kernels before them)
    and launched the ordinary way run the same arithmetic: the same greedy tokens, batched
    (GEMV rows 1-4) and alone, with CUDA graphs (the default) and eagerly."""
    d, ref, _ = load_fixture(name)
    runs = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("LIGHTLLM_CUDA_GRAPHS", graphs)
        for pdl in ("0", "1"):
            monkeypatch.setenv("LIGHTLLM_PDL", pdl)
            llm = LLM(d, device="cuda", enable_prefix_caching=False)
            runs[graphs, pdl] = greedy(llm, ref["prompts"]) + [greedy(llm, [p])[0] for p in ref["prompts"][:2]]
        assert runs[graphs, "1"] == runs[graphs, "0"], f"{name} graphs={graphs}"
