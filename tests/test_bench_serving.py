"""benchmarks/bench_serving.py against a tiny in-process fake OpenAI-compatible streaming server."""
import asyncio
import importlib.util
import json
import os
import socket
import threading
import time

import pytest

for _m in ("fastapi", "uvicorn", "httpx", "numpy"):  # the benchmark itself needs only httpx + numpy
    pytest.importorskip(_m)
import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("bench_serving", os.path.join(ROOT, "benchmarks", "bench_serving.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

DELAY = 0.004  # seconds between streamed tokens
STATE = {"inflight": 0, "max_inflight": 0, "bodies": []}


def make_app():
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}

    async def handle(req: Request, chat: bool):
        body = await req.json()
        STATE["bodies"].append(body)
        model = body["model"]
        if model == "fake-fail":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        prompt = body["messages"][0]["content"] if chat else body["prompt"]
        n_in, n_out = len(prompt.split()), body["max_tokens"]
        usage = model != "fake-nousage" and (body.get("stream_options") or {}).get("include_usage")

        def chunk(text, final=False):
            c = {"index": 0, "finish_reason": "length" if final else None}
            c.update({"delta": {"content": text}} if chat else {"text": text})
            return "data: " + json.dumps({"id": "x", "model": model, "choices": [c]}) + "\n\n"

        async def gen():
            STATE["inflight"] += 1
            STATE["max_inflight"] = max(STATE["max_inflight"], STATE["inflight"])
            try:
                if model == "fake-pair":  # hold until a second request is in flight (1 s at most), so a
                    t0 = time.monotonic()  # loaded machine cannot serialise what the client sent together
                    while STATE["inflight"] < 2 and time.monotonic() - t0 < 1.0:
                        await asyncio.sleep(0.001)
                await asyncio.sleep(2 * DELAY)  # "prefill"
                if chat:  # role-only first chunk, as real servers send: must not count as the first token
                    yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}) + "\n\n"
                for i in range(n_out):
                    yield chunk(f"t{i} ", final=i == n_out - 1)
                    await asyncio.sleep(DELAY)
                if usage:
                    u = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
                    yield "data: " + json.dumps({"choices": [], "usage": u}) + "\n\n"
                yield "data: [DONE]\n\n"
            finally:
                STATE["inflight"] -= 1
        return StreamingResponse(gen(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(req: Request):
        return await handle(req, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(req: Request):
        return await handle(req, chat=True)
    return app


@pytest.fixture(scope="module")
def base_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "fake server did not start"
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    t.join(timeout=5)


def bench_run(base_url, *extra):
    STATE.update(inflight=0, max_inflight=0, bodies=[])
    return bench.main(["--base-url", base_url, "--input-len", "32", "--output-len", "8", *extra])


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_request_rate(base_url, endpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    s = bench_run(base_url, "--endpoint", endpoint, "--num-prompts", "6", "--request-rate", "50",
                  "--range-ratio", "0.5", "--ignore-eos", "--seed", "3", "--result-json", str(out))
    print(capsys.readouterr().out)  # shown with pytest -s
    assert s["model"] == "fake-model" and s["completed"] == 6 and s["failed"] == 0 and s["usage_missing"] == 0
    reqs = s["requests"]
    assert all(r["completion_tokens"] == r["target_output_len"] for r in reqs)
    assert all(16 <= r["target_input_len"] <= 48 and 4 <= r["target_output_len"] <= 12 for r in reqs)
    assert s["total_input_tokens"] == sum(r["target_input_len"] for r in reqs)  # fake server counts words
    assert all(b["ignore_eos"] is True and b["min_tokens"] == b["max_tokens"] and b["stream"] for b in STATE["bodies"])
    # TTFT includes the 2*DELAY "prefill"; TPOT and ITL are about DELAY; E2E ≥ TTFT.
    assert 2 * DELAY * 1e3 * 0.9 < s["ttft_ms"]["median"] < 500
    assert DELAY * 1e3 * 0.8 < s["tpot_ms"]["median"] < 100 and DELAY * 1e3 * 0.5 < s["itl_ms"]["median"] < 100
    assert s["e2e_ms"]["mean"] > s["ttft_ms"]["mean"] and s["ttft_ms"]["p99"] >= s["ttft_ms"]["median"]
    assert all(len(r["itl"]) == r["completion_tokens"] - 1 for r in reqs)
    assert 0 < s["request_throughput"] < 1000 and s["output_throughput"] > 0 and s["input_throughput"] > 0
    # Poisson at 50 req/s: 6 requests take ~0.1 s of arrivals, plus serving
    assert s["duration_s"] > s["e2e_ms"]["mean"] / 1e3
    j = json.loads(out.read_text())
    assert j["completed"] == 6 and len(j["requests"]) == 6 and j["args"]["endpoint"] == endpoint
    assert j["ttft_ms"]["mean"] == pytest.approx(s["ttft_ms"]["mean"])
    assert "approximate" in " ".join(j["notes"])


def test_max_concurrency(base_url, tmp_path):
    out = tmp_path / "c.json"
    s = bench_run(base_url, "--model", "fake-pair", "--num-prompts", "8", "--max-concurrency", "2", "--result-json", str(out))
    assert s["completed"] == 8 and s["failed"] == 0 and STATE["max_inflight"] == 2
    assert s["total_output_tokens"] == 64 and s["total_input_tokens"] == 8 * 32
    # 8 requests, 2 at a time, each ≥ 10 * DELAY: at least 4 rounds
    assert s["duration_s"] >= 4 * 10 * DELAY * 0.9
    assert json.loads(out.read_text())["args"]["request_rate"] == "inf"  # strict JSON, no Infinity
    first = sorted(b["prompt"] for b in STATE["bodies"])
    bench_run(base_url, "--model", "fake-pair", "--num-prompts", "8")  # same seed -> same prompts
    assert sorted(b["prompt"] for b in STATE["bodies"]) == first


def test_no_usage_and_failures(base_url, capsys):
    s = bench_run(base_url, "--model", "fake-nousage", "--num-prompts", "3", "--endpoint", "chat")
    assert s["completed"] == 3 and s["usage_missing"] == 3 and s["total_output_tokens"] == 24
    assert "no usage" in capsys.readouterr().out
    s = bench_run(base_url, "--model", "fake-fail", "--num-prompts", "3")
    assert s["completed"] == 0 and s["failed"] == 3 and "HTTP 500" in s["requests"][0]["error"]
    assert s["ttft_ms"]["mean"] is None and "boom" in capsys.readouterr().out
    s = bench_run(base_url.replace("/v1", "/nope"), "--model", "m", "--num-prompts", "2")
    assert s["failed"] == 2 and "404" in s["requests"][0]["error"]


def test_exact_prompt_lengths_with_tokenizer():
    pytest.importorskip("tokenizers")
    import numpy as np
    d = os.path.join(ROOT, "..", "shared", "tokenizers", "qwen3")
    if not os.path.exists(os.path.join(d, "tokenizer.json")):
        pytest.skip("no shared qwen3 tokenizer")
    tok, pool = bench.load_tokenizer(d)
    rng = np.random.default_rng(0)
    lens = [1, 7, 64, 300]
    got = [len(tok.encode(bench.make_prompt(n, rng, tok, pool), add_special_tokens=False).ids) for n in lens]
    assert sum(g == n for g, n in zip(got, lens)) >= 3 and all(abs(g - n) <= 2 for g, n in zip(got, lens))
