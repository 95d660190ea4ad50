"""Whole-model agreement with Hugging Face transformers (fixtures made by
tests/fixtures/make_fixtures.py): full-prompt logits, 32 greedy tokens, and invariance of greedy
output to batching, chunked prefill and the prefix cache."""
import numpy as np
import pytest

from conftest import FIXTURE_NAMES, load_fixture
from lightllm import LLM, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=32, ignore_eos=True)


def greedy_tokens(llm, prompts):
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], GREEDY, use_tqdm=False)
    return [o.outputs[0].token_ids for o in outs]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_prompt_logits_match_transformers(name):
    d, ref, logits = load_fixture(name)
    llm = LLM(d)
    for ids, want in zip(ref["prompts"], logits):
        got = llm.prompt_logits(ids)
        rel = np.abs(got - want).max() / np.abs(want).max()
        assert rel < 1e-3, f"{name} prompt of {len(ids)} tokens: max relative error {rel:.2e}"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_greedy_matches_transformers_batched(name):
    d, ref, _ = load_fixture(name)
    assert greedy_tokens(LLM(d), ref["prompts"]) == ref["greedy"]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_greedy_invariant_to_batching_chunking_and_prefix_cache(name):
    d, ref, _ = load_fixture(name)
    want = ref["greedy"]
    alone = LLM(d, enable_prefix_caching=False)
    assert [greedy_tokens(alone, [p])[0] for p in ref["prompts"]] == want
    chunked = LLM(d, chunked_prefill_size=5, max_num_batched_tokens=16, max_num_seqs=8)
    assert greedy_tokens(chunked, ref["prompts"]) == want
    cached = LLM(d, enable_prefix_caching=True)
    assert greedy_tokens(cached, ref["prompts"]) == want
    # the second run reuses every prompt (and generated) prefix from the radix cache
    before = cached.stats()["num_cached_prompt_tokens"]
    assert greedy_tokens(cached, ref["prompts"][::-1]) == want[::-1]
    assert cached.stats()["num_cached_prompt_tokens"] > before
    # mixed with unrelated requests of other lengths
    noise = [[5 + (i * 7) % 300 for i in range(n)] for n in (3, 11, 30)]
    got = greedy_tokens(cached, noise + ref["prompts"])
    assert got[len(noise):] == want


def test_config_spellings_are_both_exercised():
    spellings = {load_fixture(n)[1]["config_spelling"] for n in FIXTURE_NAMES}
    assert spellings == {"legacy", "transformers5"}
