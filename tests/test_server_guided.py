"""Structured output through the HTTP server, for both transports (the router/backend processes
over shared memory, and --single-process): OpenAI's response_format and vLLM's guided_* fields
through the official openai client, on the dummy-weight Qwen3-shaped model with the real Qwen3
tokenizer (tests/test_server.py). Random weights make the outputs arbitrary, so every finished
output is checked against its constraint (json.loads + jsonschema.validate, choice membership,
regex fullmatch) and every truncated one must be a prefix the grammar accepts."""
import asyncio
import json
import re
import signal
import subprocess

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")

from test_server import MODEL, _start, model_dir  # noqa: E402,F401  (model_dir: the fixture)
from lightllm import _C  # noqa: E402

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                      "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                      "ok": {"type": "boolean"}},
     "required": ["name", "age", "ok"], "additionalProperties": False},
    {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 4},
    {"type": "object", "properties": {"kind": {"const": "point"},
                                      "xy": {"type": "array", "items": {"type": "integer", "minimum": -9, "maximum": 9},
                                             "minItems": 2, "maxItems": 2}},
     "required": ["kind", "xy"], "additionalProperties": False},
    {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"v": {"enum": [1, 2, 3]}}, "required": ["v"],
                                  "additionalProperties": False}]},
    {"type": "object", "properties": {"tag": {"type": "string", "pattern": "^[a-z]{2,4}$"}},
     "required": ["tag"], "additionalProperties": False},
]
CHOICES = ["yes", "no", "maybe so"]
REGEX = r"[0-9]{3}-[a-z]{2,5}"
MESSAGES = [{"role": "user", "content": "Answer in JSON."}]
GRAMMAR_BYTES = 4096  # --max-grammar-bytes (the request slot's grammar region; checked in both modes)


@pytest.fixture(scope="module", params=["processes", "single-process"])
def server(request, model_dir, tmp_path_factory):  # noqa: F811
    mode = request.param
    log = str(tmp_path_factory.mktemp("log") / f"guided-{mode}.log")
    args = ["--model-dir", model_dir, "--served-model-name", MODEL, "--load-format", "dummy", "--device", "cpu",
            "--max-total-token-num", "16384", "--router-interval-ms", "1"]
    args += ["--max-grammar-bytes", str(GRAMMAR_BYTES)] + (["--single-process"] if mode == "single-process" else [])
    proc, url = _start(args, log)
    yield mode, url
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(15) == 0
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="none", max_retries=0, timeout=120)


def _schema_format(schema, name="out"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _check_json(text, finish, schema, whitespace=False):
    """A finished output is a valid instance; a truncated one a prefix the grammar accepts."""
    if finish == "stop":
        jsonschema.validate(json.loads(text), schema)
    else:
        assert finish == "length", finish
        assert _C.grammar_accepts("json_schema", json.dumps(schema), text.encode(), whitespace, True), text


def test_json_schema_completions_and_chat(client):
    finished = 0
    for i, schema in enumerate(SCHEMAS):
        fmt = _schema_format(schema, f"s{i}")
        comp = client.completions.create(model=MODEL, prompt=f"JSON number {i}:", max_tokens=64, n=2, seed=i,
                                         temperature=1.0, extra_body={"response_format": fmt})
        chat = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=64, seed=i,
                                              response_format=fmt)
        outs = [(c.text, c.finish_reason) for c in comp.choices]
        outs += [(c.message.content, c.finish_reason) for c in chat.choices]
        for text, finish in outs:
            _check_json(text, finish, schema)
            finished += finish == "stop"
    assert finished >= len(SCHEMAS) * 3 // 2  # most end by themselves (the grammar ends, EOS is forced)
    obj = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=64, seed=1,
                                         response_format={"type": "json_object"}).choices[0]
    _check_json(obj.message.content, obj.finish_reason, {"type": "object"})
    spaced = client.completions.create(model=MODEL, prompt="JSON:", max_tokens=64, seed=3, extra_body={
        "guided_json": json.dumps(SCHEMAS[0]), "guided_whitespace": True}).choices[0]
    _check_json(spaced.text, spaced.finish_reason, SCHEMAS[0], whitespace=True)
    plain = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4, response_format={
        "type": "text"}, extra_body={"ignore_eos": True})
    assert plain.usage.completion_tokens == 4  # "text": unconstrained


def test_n_samples_with_a_schema_differ_and_validate(client):
    r = client.completions.create(model=MODEL, prompt="Colors:", max_tokens=48, n=4, seed=5, temperature=1.0,
                                  extra_body={"guided_json": SCHEMAS[1]})
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    for c in r.choices:
        _check_json(c.text, c.finish_reason, SCHEMAS[1])
    assert len({c.text for c in r.choices}) > 1


def test_choice_regex_grammar_and_native_generate(client, server):
    for seed in range(4):
        c = client.completions.create(model=MODEL, prompt="Well?", max_tokens=16, seed=seed,
                                      extra_body={"guided_choice": CHOICES}).choices[0]
        assert c.finish_reason == "stop" and c.text in CHOICES
        r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16, seed=seed,
                                           extra_body={"guided_regex": REGEX}).choices[0]
        assert r.finish_reason == "stop" and re.fullmatch(REGEX, r.message.content), r.message.content
        g = client.completions.create(model=MODEL, prompt="Bits:", max_tokens=16, seed=seed, extra_body={
            "guided_grammar": 'root ::= "<" bits ">"\nbits ::= [01] | [01] [01] | [01] [01] [01]'}).choices[0]
        assert g.finish_reason == "stop" and re.fullmatch(r"<[01]{1,3}>", g.text), g.text
    with httpx.Client(base_url=server[1], timeout=60) as h:
        body = {"inputs": "Pick", "parameters": {"max_new_tokens": 16, "do_sample": True, "seed": 2,
                                                 "guided_choice": CHOICES}}
        assert h.post("/generate", json=body).json()["generated_text"][0] in CHOICES
        body["parameters"] = {"max_new_tokens": 16, "guided_regex": REGEX}
        events = [json.loads(line[5:]) for line in h.post("/generate_stream", json=body).text.splitlines()
                  if line.startswith("data:")]
        assert events[-1]["finished"] and re.fullmatch(REGEX, events[-1]["generated_text"])


def test_max_tokens_truncation_is_length(client):
    for schema in SCHEMAS[:3]:
        c = client.completions.create(model=MODEL, prompt="JSON:", max_tokens=2, extra_body={
            "guided_json": schema}).choices[0]
        assert c.finish_reason == "length"
        _check_json(c.text, c.finish_reason, schema)
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=1,
                                       response_format=_schema_format(SCHEMAS[0]))
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content.startswith("{")
    _check_json(r.choices[0].message.content, "length", SCHEMAS[0])


def test_constrained_and_free_requests_share_a_batch(server):
    """Guided and unconstrained requests at once (streamed and not): each keeps its own rules."""
    async def free(c, i):
        r = await c.completions.create(model=MODEL, prompt=f"free {i}", max_tokens=12, seed=i,
                                       extra_body={"ignore_eos": True})
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 12

    async def schema(c, i):
        s = SCHEMAS[i % len(SCHEMAS)]
        stream = await c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=64, seed=i, stream=True,
                                                 response_format=_schema_format(s))
        text, finish = "", None
        async for chunk in stream:
            for ch in chunk.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
        _check_json(text, finish, s)

    async def choice(c, i):
        r = await c.completions.create(model=MODEL, prompt=f"choose {i}", max_tokens=16, seed=i,
                                       extra_body={"guided_choice": CHOICES})
        assert r.choices[0].text in CHOICES

    async def main():
        async with openai.AsyncOpenAI(base_url=server[1] + "/v1", api_key="none", max_retries=0, timeout=120) as c:
            await asyncio.gather(*[f(c, i) for i in range(8) for f in (free, schema, choice)])
    asyncio.run(main())


CHAT = {"model": MODEL, "messages": MESSAGES, "max_tokens": 8}
COMP = {"model": MODEL, "prompt": "hi", "max_tokens": 8}
BAD_SHAPE = [  # (path, body, param, words in the message): refused before the engine sees them
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "xml"}}, "response_format.type", ""),
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema"}}, "response_format.json_schema",
     "json_schema"),
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format.json_schema.schema", "required"),
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": "not an object"}}}, "response_format.json_schema.schema", ""),
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_object"}, "guided_regex": "a"},
     "guided_regex", "response_format and guided_regex"),
    ("/v1/completions", {**COMP, "guided_choice": ["a"], "guided_regex": "a"}, "guided_choice",
     "guided_regex and guided_choice"),
    ("/v1/completions", {**COMP, "guided_regex": 5}, "guided_regex", ""),
    ("/v1/completions", {**COMP, "guided_choice": "yes"}, "guided_choice", ""),
    ("/v1/completions", {**COMP, "guided_choice": ["a", 1]}, "guided_choice.1", ""),
    ("/v1/completions", {**COMP, "guided_json": [1, 2]}, "guided_json", ""),
    ("/v1/completions", {**COMP, "guided_whitespace": "lots"}, "guided_whitespace", ""),
    ("/generate", {"inputs": "hi", "parameters": {"guided_regex": "a", "guided_grammar": "root ::= \"a\""}},
     "parameters.guided_grammar", "parameters.guided_regex and parameters.guided_grammar"),
]
BAD_GRAMMAR = [  # refused by the grammar compiler in the engine: 400 naming the field, with its message
    ("/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "array", "uniqueItems": True}}}}, "response_format", "uniqueItems"),
    ("/v1/completions", {**COMP, "guided_json": {"type": "string", "format": "hostname"}}, "guided_json", "hostname"),
    ("/v1/completions", {**COMP, "guided_json": "{not json"}, "guided_json", ""),
    ("/v1/completions", {**COMP, "guided_regex": "a(b"}, "guided_regex", "regex"),
    ("/v1/completions", {**COMP, "guided_choice": []}, "guided_choice", "empty"),
    ("/v1/completions", {**COMP, "guided_grammar": "root ::= foo"}, "guided_grammar", "undefined rule 'foo'"),
    ("/v1/completions", {**COMP, "n": 2, "guided_grammar": 'root ::= p "c" | q "d"\np ::= "(" p ")" | "x"\n'
                                                          'q ::= "(" q ")" | "x"'}, "guided_grammar", "not LR(1)"),
    # a shift/reduce conflict on a complete item (crashed the conflict report: csrc/grammar/lr.c)
    ("/v1/chat/completions", {**CHAT, "guided_grammar": 'root ::= s\ns ::= "a" s "a" | "b" s "b" | ""'},
     "guided_grammar", "shift/reduce conflict"),
    ("/generate_stream", {"inputs": "hi", "parameters": {"guided_regex": "[z-a]"}}, "parameters.guided_regex",
     "regex"),
]


def _post_bad(h, cases):
    for path, body, param, words in cases:
        r = h.post(path, json=body)
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert err["param"] == param and words in err["message"], (body, err)


def test_bad_shapes_get_400_naming_the_field(server):
    with httpx.Client(base_url=server[1], timeout=60) as h:
        _post_bad(h, BAD_SHAPE)
        assert h.get("/health").status_code == 200


def test_bad_grammars_get_400_and_server_keeps_serving(server, client):
    with httpx.Client(base_url=server[1], timeout=60) as h:
        _post_bad(h, BAD_GRAMMAR)
        big = "|".join(f"w{i:05d}" for i in range(GRAMMAR_BYTES // 7 + 1))  # over --max-grammar-bytes in both modes
        _post_bad(h, [("/v1/completions", {**COMP, "guided_regex": big}, "guided_regex", "--max-grammar-bytes")])
        assert h.get("/health").status_code == 200
    c = client.completions.create(model=MODEL, prompt="still?", max_tokens=16,
                                  extra_body={"guided_choice": CHOICES}).choices[0]
    assert c.text in CHOICES


def test_max_grammar_bytes_flag_is_checked():
    import sys
    from test_server import TESTS
    bad = subprocess.run([sys.executable, "-m", "lightllm.server", "--max-grammar-bytes", "100"], cwd=TESTS,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--max-grammar-bytes 100" in bad.stderr
