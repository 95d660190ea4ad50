"""The HTTP server end to end: `python -m lightllm.server` as a subprocess, driven by the official
openai client (and httpx for raw bodies). The model is a dummy-weight Qwen3-shaped model with the
real Qwen3 tokenizer and chat template, so text, templates and token counts are real."""
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from conftest import tiny_qwen3_dir  # noqa: E402
TESTS = os.path.dirname(os.path.abspath(__file__))  # cwd of server subprocesses: the installed package, not the source tree
from lightllm.tokenizer import Tokenizer  # noqa: E402

MODEL = "qwen3-tiny"
MAX_MODEL_LEN = 2048
NO_EOS = {"ignore_eos": True}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log_path):
    port = _free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "lightllm.server", "--port", str(port), *args], cwd=TESTS,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{open(log_path).read()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become healthy:\n" + open(log_path).read())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_qwen3_dir(tmp_path_factory.mktemp("server") / MODEL, MAX_MODEL_LEN)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("log") / "server.log")
    proc, url = _start(["--model-dir", model_dir, "--served-model-name", MODEL, "--load-format", "dummy",
                        "--disable-prefix-caching", "--max-total-token-num", "32768", "--device", "cpu"], log)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return Tokenizer.from_dir(model_dir)


def _metric(url, name):
    text = httpx.get(url + "/metrics").text
    m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_health_models_metrics(server):
    assert httpx.get(server + "/health").status_code == 200
    models = httpx.get(server + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL
    assert models["data"][0]["max_model_len"] == MAX_MODEL_LEN
    text = httpx.get(server + "/metrics").text
    for name in ("lightllm_time_to_first_token_seconds", "lightllm_time_per_output_token_seconds",
                 "lightllm_queue_length", "lightllm_running_batch_size", "lightllm_kv_slots_used",
                 "lightllm_kv_slots_total", "lightllm_prefix_cache_hit_rate", "lightllm_request_success_total"):
        assert name in text, name
    assert _metric(server, "lightllm_kv_slots_total") > 0


def test_completions(client, tokenizer):
    r = client.completions.create(model=MODEL, prompt="Hello, world", max_tokens=6, temperature=0, extra_body=NO_EOS)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == MODEL
    c = r.choices[0]
    assert c.finish_reason == "length" and c.index == 0 and isinstance(c.text, str)
    assert r.usage.prompt_tokens == len(tokenizer.encode("Hello, world")) and r.usage.completion_tokens == 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + 6
    ids = tokenizer.encode("Hello, world")
    same = client.completions.create(model=MODEL, prompt=ids, max_tokens=6, temperature=0, extra_body=NO_EOS)
    assert same.choices[0].text == c.text  # greedy, the same prompt as token ids
    many = client.completions.create(model=MODEL, prompt=["a b", "c d"], n=2, max_tokens=3, seed=1, extra_body=NO_EOS)
    assert sorted(ch.index for ch in many.choices) == [0, 1, 2, 3] and many.usage.completion_tokens == 12


def test_chat_with_real_qwen3_template(client, tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, temperature=0, extra_body=NO_EOS)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant" and r.choices[0].finish_reason == "length"
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n")
    assert r.usage.prompt_tokens == len(tokenizer.encode(prompt, add_special_tokens=False))
    no_think = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1, extra_body={
        "chat_template_kwargs": {"enable_thinking": False}})
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False)
    assert "<think>" in rendered
    assert no_think.usage.prompt_tokens == len(tokenizer.encode(rendered, add_special_tokens=False))
    parts = client.chat.completions.create(model=MODEL, max_tokens=1, messages=[
        {"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi"}]}])
    assert parts.usage.prompt_tokens == len(tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hi"}], tokenize=True))


def test_streaming_with_usage(client):
    kw = dict(model=MODEL, max_tokens=8, temperature=0.8, seed=7, extra_body=NO_EOS)
    messages = [{"role": "user", "content": "Tell me a story"}]
    full = client.chat.completions.create(messages=messages, **kw)
    chunks = list(client.chat.completions.create(messages=messages, stream=True, stream_options={"include_usage": True},
                                                 **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    comp = list(client.completions.create(prompt="Once upon", stream=True, stream_options={"include_usage": True},
                                          **kw))
    assert comp[-1].usage.completion_tokens == 8
    assert "".join(c.choices[0].text for c in comp if c.choices) == client.completions.create(
        prompt="Once upon", **kw).choices[0].text


def test_n_and_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=3, max_tokens=4,
                                       logprobs=True, top_logprobs=3, seed=3, extra_body=NO_EOS)
    assert sorted(c.index for c in r.choices) == [0, 1, 2] and r.usage.completion_tokens == 12
    for c in r.choices:
        entries = c.logprobs.content
        assert len(entries) == 4
        for e in entries:
            assert e.logprob <= 0 and len(e.top_logprobs) == 3 and bytes(e.bytes).decode("utf-8", "replace") == e.token
            assert e.top_logprobs[0].logprob >= e.top_logprobs[-1].logprob
    comp = client.completions.create(model=MODEL, prompt="hello", max_tokens=4, logprobs=2, extra_body=NO_EOS)
    lp = comp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert lp.text_offset[0] == 0 and all(len(t) >= 2 for t in lp.top_logprobs)


def test_stop_strings_and_seed(client):
    kw = dict(model=MODEL, prompt="The weather today", max_tokens=24, temperature=1.0, extra_body=NO_EOS)
    a = client.completions.create(seed=11, **kw).choices[0].text
    assert client.completions.create(seed=11, **kw).choices[0].text == a  # same seed, same text
    assert any(client.completions.create(seed=s, **kw).choices[0].text != a for s in (12, 13))
    stop = a[6:9]
    cut = client.completions.create(seed=11, stop=[stop], **kw).choices[0]
    assert cut.finish_reason == "stop" and cut.text == a[: a.index(stop)]
    streamed = "".join(c.choices[0].text for c in client.completions.create(seed=11, stop=stop, stream=True, **kw))
    assert streamed == cut.text  # the stream never shows a stop string it later cuts


def test_concurrent_streaming_clients(server):
    async def one(aclient, i):
        stream = await aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"request {i}"}], max_tokens=6, stream=True,
            seed=i, extra_body=NO_EOS)
        reasons, text = [], ""
        async for chunk in stream:
            for c in chunk.choices:
                text += c.delta.content or ""
                reasons.append(c.finish_reason)
        return reasons[-1], text

    async def main():
        aclient = openai.AsyncOpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=120)
        try:
            return await asyncio.gather(*[one(aclient, i) for i in range(64)])
        finally:
            await aclient.close()
    results = asyncio.run(main())
    assert len(results) == 64 and all(reason == "length" for reason, _ in results)


def _wait_kv_idle(url, idle, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _metric(url, "lightllm_kv_slots_used") == idle and _metric(url, "lightllm_running_batch_size") == 0:
            return True
        time.sleep(0.05)
    return False


def test_disconnect_aborts_and_frees_kv(server):
    assert _wait_kv_idle(server, 0.0)  # prefix cache disabled: used slots are held slots
    aborted = _metric(server, "lightllm_request_abort_total")
    body = {"model": MODEL, "prompt": "a long story", "max_tokens": 2000, "stream": True, **NO_EOS}
    with httpx.Client(timeout=30) as h:
        with h.stream("POST", server + "/v1/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            for _ in range(3):
                next(lines)
            assert _metric(server, "lightllm_kv_slots_used") > 0
    assert _wait_kv_idle(server, 0.0)
    with pytest.raises(httpx.ReadTimeout):  # a non-streaming request whose client gives up
        httpx.post(server + "/v1/completions", json={**body, "stream": False}, timeout=0.3)
    assert _wait_kv_idle(server, 0.0)
    assert _metric(server, "lightllm_request_abort_total") == aborted + 2


BAD = [  # (path, body (dict or raw str), status, param)
    ("/v1/completions", '{"model": "qwen3-tiny", "prompt": "hi",', 400, None),
    ("/v1/completions", "[1, 2]", 400, None),
    ("/v1/completions", {"model": MODEL}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": 5}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": "many"}, 400, "max_tokens"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "temperature": -1}, 400, "temperature"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "top_p": 1.5}, 400, "top_p"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "n": 0}, 400, "n"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 10**12}, 400, "max_tokens"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "logprobs": 99}, 400, "logprobs"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "presence_penalty": 3}, 400, "presence_penalty"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "stop": [""]}, 400, "stop"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "seed": 2**70}, 400, "seed"),
    ("/v1/completions", {"model": MODEL, "prompt": ""}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": []}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": [1, 999999]}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": [True, False]}, 400, "prompt"),
    ("/v1/completions", '{"model": "qwen3-tiny", "prompt": "\\ud800"}', 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "stop_token_ids": [10**7]}, 400, "stop_token_ids"),
    ("/v1/completions", {"model": MODEL, "prompt": "word " * (MAX_MODEL_LEN + 10)}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": MAX_MODEL_LEN}, 400, "max_tokens"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "echo": True}, 400, "echo"),
    ("/v1/completions", {"model": "gpt-4", "prompt": "hi"}, 404, "model"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": "hi"}, 400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": None}]}, 400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                              "max_completion_tokens": 0}, 400, "max_completion_tokens"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"content": "hi"}]}, 400, "messages.0.role"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2},
     400, "top_logprobs"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logprobs": True,
                              "top_logprobs": 50}, 400, "top_logprobs"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x " * (MAX_MODEL_LEN + 10)}]},
     400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     400, "messages.0.content"),
    ("/generate", {"parameters": {}}, 400, "inputs"),
    ("/generate", {"inputs": "hi", "parameters": {"max_new_tokens": -1}}, 400, "parameters.max_new_tokens"),
    ("/generate_stream", {"inputs": "hi", "parameters": {"temperature": "x"}}, 400, "parameters.temperature"),
]


def test_bad_requests_get_4xx_and_server_keeps_serving(server, client):
    with httpx.Client(base_url=server, timeout=30) as h:
        for path, body, status, param in BAD:
            r = (h.post(path, content=body, headers={"content-type": "application/json"}) if isinstance(body, str)
                 else h.post(path, json=body))
            assert r.status_code == status, (path, body, r.text)
            err = r.json()["error"]
            assert err["message"] and err["type"] and err["code"] == status, r.text
            assert err["param"] == param, (body, err)
        no_type = h.post("/v1/completions", content=json.dumps({"model": MODEL, "prompt": "hi"}))
        assert no_type.status_code == 400 and "Content-Type" in no_type.json()["error"]["message"]
        assert h.get("/nope").status_code == 404 and h.get("/v1/completions").status_code == 405
        assert h.get("/health").status_code == 200
    assert client.completions.create(model=MODEL, prompt="still alive", max_tokens=2).choices[0].finish_reason


def test_native_generate(server, tokenizer):
    with httpx.Client(base_url=server, timeout=30) as h:
        body = {"inputs": "Hello", "parameters": {"max_new_tokens": 5, "ignore_eos": True, "return_details": True}}
        r = h.post("/generate", json=body).json()
        assert r["count_output_tokens"] == 5 and r["finish_reason"] == "length"
        assert r["prompt_tokens"] == len(tokenizer.encode("Hello")) and len(r["tokens"]) == 5
        events = [json.loads(line[5:]) for line in h.post("/generate_stream", json=body).text.splitlines()
                  if line.startswith("data:")]
        assert [e["finished"] for e in events] == [False] * 4 + [True]
        assert events[-1]["generated_text"] == r["generated_text"][0]  # greedy (do_sample defaults to false)
        assert "".join(e["token"]["text"] for e in events) == r["generated_text"][0]
        assert all(e["token"]["logprob"] <= 0 for e in events)


def test_flags_and_sigterm(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "lightllm.server", "--tp", "2"], cwd=TESTS, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "--tp" in bad.stderr
    proc, url = _start(["--max_model_len", "256", "--running_max_req_size", "8"], str(tmp_path / "demo.log"))
    try:  # the built-in demo model, underscore spellings of the flags
        assert httpx.get(url + "/v1/models").json()["data"][0]["max_model_len"] == 256
        r = httpx.post(url + "/v1/completions", json={"prompt": "hi", "max_tokens": 3}, timeout=30).json()
        assert r["usage"]["completion_tokens"] >= 1
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0 and time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
