"""Structured output end to end through LLM.generate on a dummy-weight model with the real Qwen3
vocabulary (151,936 ids; ../shared/tokenizers/qwen3): across MaskBench schemas, every output
that finishes is JSON that the jsonschema package validates, sampled at temperature 1 with
several seeds and batched with unconstrained requests (whose greedy tokens are unchanged by the
company); regex and choice outputs always match; max_tokens truncation reports "length"; a
grammar the front end refuses is a ValueError naming the problem; the sampled tokens never
leave the grammar (num_grammar_rejects stays 0)."""
import json
import os
import re

import pytest
from conftest import tiny_qwen3_dir

jsonschema = pytest.importorskip("jsonschema")
from lightllm import LLM, SamplingParams  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASKBENCH = os.path.join(ROOT, "..", "shared", "maskbench", "data")
NUM_SCHEMAS = 60


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    d = tiny_qwen3_dir(tmp_path_factory.mktemp("structured") / "qwen3-tiny", 2048)
    return LLM(d, load_format="dummy", device="cpu", max_model_len=1024, max_num_seqs=128, seed=3)


def maskbench_schemas(n):
    """The first n MaskBench schemas (spread over the set) that the front end compiles and that
    jsonschema can check (Draft 2020-12 validator; bad $schema or remote refs skipped)."""
    if not os.path.isdir(MASKBENCH):
        pytest.skip("MaskBench data not present")
    from lightllm import _C
    files = sorted(os.listdir(MASKBENCH))
    out = []
    for name in files[::7]:
        with open(os.path.join(MASKBENCH, name), encoding="utf-8") as f:
            schema = json.load(f)["schema"]
        try:
            _C.grammar_from_json_schema(json.dumps(schema))
            jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
        except Exception:
            continue
        out.append((name, schema))
        if len(out) == n:
            break
    return out


def test_json_schemas_outputs_validate(llm):
    schemas = maskbench_schemas(NUM_SCHEMAS)
    assert len(schemas) == NUM_SCHEMAS
    plain = ["Once upon a time", "The capital of France is"]
    greedy = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    alone = [o.outputs[0].token_ids for o in llm.generate(plain, greedy, use_tqdm=False)]
    prompts, params = [], []
    for i, (_, schema) in enumerate(schemas):
        for seed in (1, 2):
            prompts.append(f"Answer in JSON ({i}):")
            params.append(SamplingParams(temperature=1.0, seed=100 * i + seed, max_tokens=320, guided_json=schema))
    outs = llm.generate(prompts + plain, params + [greedy, greedy], use_tqdm=False)
    assert [o.outputs[0].token_ids for o in outs[-2:]] == alone  # unconstrained rows unaffected
    finished = 0
    for (name, schema), pair in zip(schemas, zip(outs[:-2:2], outs[1:-2:2])):
        for o in pair:
            c = o.outputs[0]
            if c.finish_reason == "length":
                continue
            assert c.finish_reason == "stop", (name, c.finish_reason)
            value = json.loads(c.text)
            jsonschema.validate(value, schema)
            finished += 1
    assert finished >= NUM_SCHEMAS  # at least half of the 2 x NUM_SCHEMAS outputs end by the grammar
    assert llm.stats()["num_grammar_rejects"] == 0


def test_regex_choice_length_and_errors(llm):
    pat = r"[0-9]{3}-[a-z]{2,4}( [A-Z][a-z]{1,8})?"
    outs = llm.generate(["x"] * 6, [SamplingParams(temperature=1.0, seed=s, max_tokens=40, guided_regex=pat)
                                    for s in range(6)], use_tqdm=False)
    for o in outs:
        assert o.outputs[0].finish_reason == "stop" and re.fullmatch(pat, o.outputs[0].text), o.outputs[0].text
    choices = ["yes", "no", "maybe so", "über"]
    outs = llm.generate(["q"] * 8, [SamplingParams(temperature=1.0, seed=s, max_tokens=10, guided_choice=choices)
                                    for s in range(8)], use_tqdm=False)
    assert all(o.outputs[0].text in choices for o in outs)
    grammar = 'root ::= "(" item ("," item)* ")"\nitem ::= [a-z]+ | root\n'
    c = llm.generate(["g"], SamplingParams(temperature=1.0, seed=5, max_tokens=4, guided_grammar=grammar),
                     use_tqdm=False)[0].outputs[0]
    assert c.finish_reason == "length" and len(c.token_ids) == 4 and c.text.startswith("(")
    with pytest.raises(ValueError, match="unsupported JSON Schema keyword 'not'"):
        llm.generate(["x"], SamplingParams(guided_json={"type": "object", "not": {"required": ["a"]}}), use_tqdm=False)
    with pytest.raises(ValueError, match="expected '\\)'"):
        llm.generate(["x"], SamplingParams(guided_regex="(a"), use_tqdm=False)
    with pytest.raises(ValueError, match="only one of guided_json, guided_regex"):
        SamplingParams(guided_json={}, guided_regex="a")
    assert llm.stats()["num_grammar_rejects"] == 0
