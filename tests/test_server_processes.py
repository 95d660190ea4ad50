"""The multi-process server (HTTP + C Router + C ModelBackend over shared memory): greedy output
equals transformers' through it, SIGTERM leaves no processes and no /dev/shm segments, and a
backend killed with SIGKILL makes the server exit non-zero, again leaving nothing behind."""
import json
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import load_fixture
from test_server import _start
from lightllm import _C

pytest.importorskip("fastapi")


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            if int(fields.get("PPid", "0").strip()) == pid and fields.get("State", "").strip()[:1] != "Z":
                out.append((int(d), fields["Name"].strip()))
    return out


def _segments(pid):
    return _C.shm_count_segments(f"lightllm-{pid}x")


def _gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/status").read().find("State:\tZ") < 0
                   for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_greedy_through_router_and_backend_matches_transformers(tmp_path):
    d, ref, _ = load_fixture("qwen3")
    proc, url = _start(["--model-dir", d, "--device", "cpu", "--router-interval-ms", "1"], str(tmp_path / "s.log"))
    try:
        kids = _children(proc.pid)
        assert len(kids) >= 2 and _segments(proc.pid) == 2
        with httpx.Client(base_url=url, timeout=60) as h:
            r = h.post("/v1/completions", json={"prompt": ref["prompts"], "max_tokens": 32, "temperature": 0,
                                                 "ignore_eos": True, "logprobs": 1}).json()
            got = sorted(r["choices"], key=lambda c: c["index"])
            assert all(c["finish_reason"] == "length" for c in got)
            tokens = [[int(t.split(":")[1]) for t in c["logprobs"]["tokens"]] for c in got]
            assert tokens == ref["greedy"]
            body = {"prompt": ref["prompts"][2], "max_tokens": 16, "temperature": 1.0, "seed": 7, "n": 3,
                    "ignore_eos": True, "logprobs": 0}
            runs = [[c["logprobs"]["tokens"] for c in sorted(h.post("/v1/completions", json=body).json()["choices"],
                                                             key=lambda c: c["index"])] for _ in range(2)]
            assert runs[0] == runs[1] and len({tuple(t) for t in runs[0]}) == 3  # seeded: reproducible, samples differ
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert _gone([p for p, _ in kids]) and _segments(proc.pid) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def _mixed_load(url, bodies, workers=16):
    """All bodies through `workers` client threads; the first `workers` requests are sent together
    (a barrier after each thread's client is made), so the load is concurrent however slowly the
    threads start on a busy machine."""
    start = threading.Barrier(min(workers, len(bodies)))

    def one(item):
        i, body = item
        with httpx.Client(base_url=url, timeout=120) as h:
            if i < start.parties:
                start.wait(60)
            r = h.post("/v1/completions", json=body)
            assert r.status_code == 200, r.text
            return [(c["finish_reason"], c["logprobs"]["tokens"]) for c in sorted(r.json()["choices"],
                                                                                key=lambda c: c["index"])]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, enumerate(bodies)))


def test_overlap_on_and_off_give_the_same_output(tmp_path):
    """The backend's two folding threads (the default) and one thread (--disable-overlap) give the
    same tokens under a concurrent mixed load: greedy of several lengths, early stops on a stop
    token (a step for the sequence is already launched when it stops), seeded sampling with n = 2,
    and a KV pool small enough (with a short admission estimate) that sequences are paused and
    recomputed (the router admits every 30 ms, so what arrives together is admitted together even
    when one loaded core serves the client and both servers)."""
    d, ref, _ = load_fixture("qwen3")
    bodies = []
    for i, p in enumerate(ref["prompts"]):
        for mt in (1, 3, 32, 40):
            bodies.append({"prompt": p, "max_tokens": mt, "temperature": 0, "ignore_eos": True, "logprobs": 0})
        bodies.append({"prompt": p, "max_tokens": 40, "temperature": 0, "ignore_eos": True, "logprobs": 0,
                       "stop_token_ids": [ref["greedy"][i][6]]})
        bodies.append({"prompt": p, "max_tokens": 24, "temperature": 0.8, "seed": 100 + i, "n": 2,
                       "ignore_eos": True, "logprobs": 0})
    results = {}
    for mode in ("overlap", "serial"):
        args = ["--model-dir", d, "--device", "cpu", "--router-interval-ms", "30", "--running-max-req-size", "8",
                "--max-total-token-num", "100", "--router-max-new-token-len", "2"] + (["--disable-overlap"] if mode == "serial" else [])
        proc, url = _start(args, str(tmp_path / f"{mode}.log"))
        try:
            results[mode] = _mixed_load(url, bodies)
            with httpx.Client(base_url=url, timeout=10) as h:
                metrics = h.get("/metrics").text
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        assert float(re.search(r"^lightllm_num_preemptions ([0-9.e+]+)$", metrics, re.M).group(1)) > 0
    assert results["overlap"] == results["serial"]
    for body, got in zip(bodies, results["overlap"]):
        i = ref["prompts"].index(body["prompt"])
        if body["temperature"] == 0:
            (finish, toks), = got
            ids, greedy = [int(t.split(":")[1]) for t in toks], ref["greedy"][i]  # the reference has 32 tokens
            stop = body.get("stop_token_ids", [None])[0]
            assert len(ids) == (greedy.index(stop) + 1 if stop is not None else body["max_tokens"])
            assert ids[:32] == greedy[:len(ids[:32])]
            assert finish == ("stop" if stop is not None else "length")


def test_backend_killed_server_exits_nonzero_and_cleans_up(tmp_path):
    log = tmp_path / "k.log"
    proc, url = _start(["--max-model-len", "256"], str(log))
    try:
        kids = [p for p, _ in _children(proc.pid)]
        backend = int(re.search(r"backend pid (\d+)", log.read_text()).group(1))
        assert backend in kids and httpx.get(url + "/health").status_code == 200
        os.kill(backend, signal.SIGKILL)
        assert proc.wait(15) == 1
        assert _gone(kids) and _segments(proc.pid) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_full_request_pool_waits_then_503(tmp_path):
    """--running-max-req-size 2 sizes the shared request pool: with no queue wait, requests beyond
    two at once get 503 + Retry-After; with a wait, all of them complete."""
    import concurrent.futures as cf
    body = {"prompt": "hello", "max_tokens": 400, "ignore_eos": True, "temperature": 0}
    for wait, log in (("0", "nowait.log"), ("30", "wait.log")):
        proc, url = _start(["--running-max-req-size", "2", "--queue-wait-s", wait, "--max-model-len", "512"],
                           str(tmp_path / log))
        try:
            for _ in range(1 if wait == "0" else 3):  # rounds: slots are freed and reclaimed many times
                with cf.ThreadPoolExecutor(6) as pool:
                    rs = list(pool.map(lambda _: httpx.post(url + "/v1/completions", json=body, timeout=60), range(6)))
                codes = sorted(r.status_code for r in rs)
                if wait == "0":
                    assert codes.count(200) >= 2 and 503 in codes
                    busy = next(r for r in rs if r.status_code == 503)
                    assert busy.headers["retry-after"] == "1" and "slots" in busy.json()["error"]["message"]
                else:
                    assert codes == [200] * 6
            assert httpx.get(url + "/health").status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)


def test_single_process_mode_serves(tmp_path):
    """--single-process: the same API from one in-process engine thread (no router/backend)."""
    proc, url = _start(["--single-process", "--max-model-len", "256"], str(tmp_path / "single.log"))
    try:
        assert _children(proc.pid) == [] and _segments(proc.pid) == 0
        r = httpx.post(url + "/v1/completions", json={"prompt": "hi", "max_tokens": 5, "ignore_eos": True}, timeout=30)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
        with httpx.stream("POST", url + "/v1/completions", timeout=30,
                          json={"prompt": "hi", "max_tokens": 4, "ignore_eos": True, "stream": True}) as s:
            assert sum(line.startswith("data: {") for line in s.iter_lines()) >= 4
        # a stop string: the streamed pieces never contain text that the stop later cuts
        greedy = {"prompt": "hi", "max_tokens": 40, "ignore_eos": True, "temperature": 0}
        full = httpx.post(url + "/v1/completions", json=greedy, timeout=30).json()["choices"][0]["text"]
        stop = full[12:14]
        cut = httpx.post(url + "/v1/completions", json={**greedy, "stop": [stop]}, timeout=30).json()["choices"][0]
        assert cut["finish_reason"] == "stop" and cut["text"] == full[:full.index(stop)]
        with httpx.stream("POST", url + "/v1/completions", timeout=30, json={**greedy, "stop": [stop], "stream": True}) as s:
            pieces = [json.loads(line[6:])["choices"][0]["text"] for line in s.iter_lines()
                      if line.startswith("data: {")]
        assert "".join(pieces) == cut["text"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_shm_client_submit_carries_a_grammar_spec():
    """ShmClient.submit writes the engine dict's grammar spec into the slot's grammar region
    (--max-grammar-bytes per slot, one byte kept for the NUL); a spec that does not fit, an
    unknown kind or a non-string spec is a ValueError naming the grammar, and leaks no slot."""
    sid = f"{os.getpid()}xguided"
    _C.shm_server_create(sid, 2, 64, 8, 256, 128, 16)
    try:
        c = _C.ShmClient(sid)
        base = {"max_tokens": 4, "n": 1, "logprobs": -1}
        spec = {**base, "grammar_kind": "regex", "grammar": "é" * 63, "grammar_whitespace": False}  # 126 bytes
        for bad, words in (({**spec, "grammar": "x" * 128}, "grammar spec is 128 bytes"),
                           ({**spec, "grammar": "é" * 64}, "--max-grammar-bytes 128"),
                           ({**spec, "grammar_kind": "lark"}, "grammar_kind"),
                           ({**spec, "grammar": None}, "grammar must be a string")):
            with pytest.raises(ValueError, match=re.escape(words)):
                c.submit(1, 1, 0, [1, 2], bad)
        slots = [c.submit(2, 2, 0, [1, 2], {**spec, "grammar": "x" * 127}),
                 c.submit(3, 3, 0, [1, 2], {**base, "grammar_kind": None})]  # unconstrained
        assert sorted(slots) == [0, 1] and c.submit(4, 4, 0, [1], base) == -1  # both slots taken, none leaked
        for s in slots:
            c.abort(s)
            c.release(s)
        assert c.submit(5, 5, 0, [1, 2], {**spec, "grammar_kind": "json_schema", "grammar_whitespace": True}) >= 0
        del c
    finally:
        _C.shm_server_destroy(sid)
    assert _C.shm_count_segments(f"lightllm-{sid}") == 0
