"""Online serving benchmark: a load generator for any OpenAI-compatible server (vLLM, SGLang,
LightLLM, ours). Pure client: needs httpx and numpy (and `tokenizers` for --tokenizer-dir).

    python benchmarks/bench_serving.py --base-url http://127.0.0.1:8000/v1 [--model NAME] \\
        [--endpoint completions|chat] [--num-prompts 200] [--request-rate 10 | --max-concurrency 32] \\
        [--input-len 1024 --output-len 128 --range-ratio 0.0] [--seed 0] [--ignore-eos] \\
        [--tokenizer-dir DIR_WITH_tokenizer.json] [--result-json out.json]

Every request streams (stream_options.include_usage). Per request: TTFT = time to the first
non-empty content chunk; ITL = gaps between content chunks; TPOT = (E2E - TTFT) /
(completion_tokens - 1); E2E = send to end of stream. Token counts come from the server's usage;
where a server sends none, completion tokens = content chunks and prompt tokens = the target
length (both flagged in the report). Without --tokenizer-dir prompts are random common words,
about one token each, so input lengths are approximate; with it they are exact token counts
of the raw prompt (the server may add BOS / a chat template on top). --request-rate draws
Poisson arrivals (inf = all at once); --max-concurrency caps requests in flight (both may be
combined). --ignore-eos sends ignore_eos=true and min_tokens=max_tokens so lengths are exact
where the server supports them."""
import argparse
import asyncio
import json
import os
import sys
import time

import httpx
import numpy as np

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there one all we their can has more when will "
         "would who so no time year people way day man thing woman life child world school state "
         "family group country problem hand part place case week company system program question "
         "work government number night point home water room mother area money story fact month "
         "lot right study book eye job word business issue side kind head house service friend "
         "father power hour game line end member law car city name team minute idea kid body").split()


def sample_lengths(n, mean, ratio, rng):
    lo, hi = max(1, int(mean * (1 - ratio))), max(1, int(np.ceil(mean * (1 + ratio))))
    return rng.integers(lo, hi + 1, size=n).tolist()


def make_prompt(n_tokens, rng, tok=None, ids_pool=None):
    """Random prompt of n_tokens tokens (exact under `tok`, else ~1 common word per token)."""
    if tok is None:
        return " ".join(rng.choice(WORDS, size=n_tokens).tolist())
    ids = rng.choice(ids_pool, size=n_tokens).tolist()
    for _ in range(16):  # decode -> re-encode drifts at token boundaries: trim / top up until stable
        text = tok.decode(ids)
        ids = tok.encode(text, add_special_tokens=False).ids
        if len(ids) == n_tokens:
            return text
        ids = ids[:n_tokens] if len(ids) > n_tokens else ids + rng.choice(ids_pool, size=n_tokens - len(ids)).tolist()
    return tok.decode(ids[:n_tokens])  # rarely off by a token or two after the retries


def load_tokenizer(d):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json") if os.path.isdir(d) else d)
    special = {t.content for t in tok.get_added_tokens_decoder().values()}
    pool = np.array(sorted(i for t, i in tok.get_vocab(with_added_tokens=False).items() if t not in special))
    return tok, pool


async def one_request(client, args, model, prompt, in_len, out_len):
    r = dict(ok=False, error="", prompt_tokens=None, completion_tokens=None, usage_reported=False,
             ttft=None, itl=[], tpot=None, latency=None, target_input_len=in_len, target_output_len=out_len)
    body = dict(model=model, max_tokens=out_len, temperature=args.temperature, stream=True,
                stream_options={"include_usage": True})
    if args.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if args.ignore_eos:
        body.update(ignore_eos=True, min_tokens=out_len)
    url = args.base_url + ("/chat/completions" if args.endpoint == "chat" else "/completions")
    t0 = time.perf_counter()
    last, n_chunks, usage = None, 0, None
    try:
        async with client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                r["error"] = f"HTTP {resp.status_code}: {(await resp.aread()).decode(errors='replace')[:500]}"
                return r
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("error"):
                    r["error"] = json.dumps(chunk["error"])[:500]
                    return r
                usage = chunk.get("usage") or usage
                for ch in chunk.get("choices") or []:
                    d = ch.get("delta") or {}
                    text = ch.get("text") if args.endpoint == "completions" else (d.get("content") or d.get("reasoning_content"))
                    if text:
                        now = time.perf_counter()
                        if last is None:
                            r["ttft"] = now - t0
                        else:
                            r["itl"].append(now - last)
                        last, n_chunks = now, n_chunks + 1
        r["latency"] = time.perf_counter() - t0
    except Exception as e:  # network errors, timeouts, malformed stream
        r["error"] = f"{type(e).__name__}: {e}"[:500]
        return r
    r["ok"] = True
    if usage and usage.get("completion_tokens") is not None:
        r.update(usage_reported=True, prompt_tokens=usage.get("prompt_tokens") or in_len,
                 completion_tokens=usage["completion_tokens"])
    else:
        r.update(prompt_tokens=in_len, completion_tokens=n_chunks)
    if r["ttft"] is not None and r["completion_tokens"] > 1:
        r["tpot"] = (r["latency"] - r["ttft"]) / (r["completion_tokens"] - 1)
    return r


async def run(args, model, prompts, in_lens, out_lens):
    rng = np.random.default_rng([args.seed, 1])
    sem = asyncio.Semaphore(args.max_concurrency) if args.max_concurrency else None
    headers = {"Authorization": f"Bearer {args.api_key}"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout), limits=limits, headers=headers) as client:
        async def go(i):
            if sem is None:
                return await one_request(client, args, model, prompts[i], in_lens[i], out_lens[i])
            async with sem:
                return await one_request(client, args, model, prompts[i], in_lens[i], out_lens[i])
        t0, due, tasks = time.perf_counter(), 0.0, []
        for i in range(len(prompts)):
            if i and args.request_rate != float("inf"):
                due += rng.exponential(1.0 / args.request_rate)
                await asyncio.sleep(max(0.0, due - (time.perf_counter() - t0)))
            tasks.append(asyncio.create_task(go(i)))
        results = await asyncio.gather(*tasks)
        return results, time.perf_counter() - t0


def summarize(results, duration):
    ok = [r for r in results if r["ok"]]
    ms = lambda xs: {k: (float(f(xs)) * 1e3 if xs else None) for k, f in
                     (("mean", np.mean), ("median", np.median), ("p99", lambda x: np.percentile(x, 99)))}
    n_in, n_out = sum(r["prompt_tokens"] for r in ok), sum(r["completion_tokens"] for r in ok)
    return dict(
        duration_s=duration, completed=len(ok), failed=len(results) - len(ok),
        usage_missing=sum(not r["usage_reported"] for r in ok),
        total_input_tokens=n_in, total_output_tokens=n_out,
        request_throughput=len(ok) / duration, input_throughput=n_in / duration,
        output_throughput=n_out / duration, total_token_throughput=(n_in + n_out) / duration,
        ttft_ms=ms([r["ttft"] for r in ok if r["ttft"] is not None]),
        tpot_ms=ms([r["tpot"] for r in ok if r["tpot"] is not None]),
        itl_ms=ms([x for r in ok for x in r["itl"]]),
        e2e_ms=ms([r["latency"] for r in ok]))


def print_table(s, args, model, notes):
    rows = [("Server", args.base_url), ("Model", model), ("Endpoint", args.endpoint),
            ("Request rate (req/s)", args.request_rate), ("Max concurrency", args.max_concurrency or "-"),
            ("Successful requests", s["completed"]), ("Failed requests", s["failed"]),
            ("Benchmark duration (s)", f"{s['duration_s']:.2f}"),
            ("Total input tokens", s["total_input_tokens"]), ("Total output tokens", s["total_output_tokens"]),
            ("Request throughput (req/s)", f"{s['request_throughput']:.2f}"),
            ("Input token throughput (tok/s)", f"{s['input_throughput']:.2f}"),
            ("Output token throughput (tok/s)", f"{s['output_throughput']:.2f}"),
            ("Total token throughput (tok/s)", f"{s['total_token_throughput']:.2f}")]
    for key, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E latency")):
        for stat in ("mean", "median", "p99"):
            v = s[key][stat]
            rows.append((f"{stat.capitalize()} {name} (ms)", "n/a" if v is None else f"{v:.2f}"))
    w, vw = max(len(k) for k, _ in rows) + 2, max(12, *(len(str(v)) for _, v in rows))
    print(" Serving benchmark ".center(w + vw, "="))
    for k, v in rows:
        print(f"{k:<{w}}{str(v):>{vw}}")
    print("=" * (w + vw))
    for n in notes:
        print("note:", n)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", default=None, help="default: first model of GET /models")
    p.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    p.add_argument("--num-prompts", type=int, default=100)
    p.add_argument("--request-rate", type=float, default=float("inf"), help="Poisson arrivals, req/s; inf = all at once")
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--input-len", type=int, default=1024)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--range-ratio", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--tokenizer-dir", default=None, help="dir holding tokenizer.json: exact prompt token lengths")
    p.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, s")
    p.add_argument("--result-json", default=None)
    a = p.parse_args(argv)
    a.base_url = a.base_url.rstrip("/")
    if not 0 <= a.range_ratio < 1:
        p.error("--range-ratio must be in [0, 1)")
    return a


def main(argv=None):
    args = parse_args(argv)
    model = args.model
    if model is None:
        resp = httpx.get(args.base_url + "/models", headers={"Authorization": f"Bearer {args.api_key}"}, timeout=30)
        resp.raise_for_status()
        model = resp.json()["data"][0]["id"]
    rng = np.random.default_rng(args.seed)
    in_lens = sample_lengths(args.num_prompts, args.input_len, args.range_ratio, rng)
    out_lens = sample_lengths(args.num_prompts, args.output_len, args.range_ratio, rng)
    notes = []
    if args.tokenizer_dir:
        tok, pool = load_tokenizer(args.tokenizer_dir)
        prompts = [make_prompt(n, rng, tok, pool) for n in in_lens]
    else:
        prompts = [make_prompt(n, rng) for n in in_lens]
        notes.append("no --tokenizer-dir: prompts are random words, input lengths are approximate")
    results, duration = asyncio.run(run(args, model, prompts, in_lens, out_lens))
    s = summarize(results, duration)
    if s["usage_missing"]:
        notes.append(f"{s['usage_missing']} responses carried no usage: completion tokens = content chunks, "
                     "prompt tokens = target lengths")
    errors = sorted({r["error"] for r in results if not r["ok"]})
    notes += [f"error: {e}" for e in errors[:5]]
    print_table(s, args, model, notes)
    if args.result_json:
        with open(args.result_json, "w") as f:
            a = {k: (str(v) if v == float("inf") else v) for k, v in vars(args).items()}  # strict JSON: no Infinity
            json.dump(dict(args=a, model=model, notes=notes, **s, requests=results), f, indent=1)
    return dict(model=model, notes=notes, **s, requests=results)


if __name__ == "__main__":
    sys.exit(0 if main()["completed"] else 1)
