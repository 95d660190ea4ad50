"""Decode and prefill latency of lightllm on dummy weights with a published model's shapes,
each figure printed beside its physical floor measured in the same run.

    python benchmarks/bench_latency.py --config ../shared/models/llama3.1-8b/config.json [--device cuda] [--quick]
        [--batches 1,4] [--steps 64] [--no-prefill]

Floors: decode step = (weight bytes + KV bytes read) / measured device-to-device copy bandwidth;
prefill = FLOPs (2 x params x tokens + attention) / measured bf16 GEMM rate. The ceilings are
measured with torch on the same card when torch is importable (copy of 2 GiB; 8192^3 bf16
matmul), else reported as n/a. Step times are wall-clock per engine step in the device-ahead order
(engine.step(): the next step is launched before the last one is waited for, so the host's work
overlaps the device's), median over the timed steps; 'fwd' is the device time of one step
(forward + sampling, from CUDA events)."""
import argparse
import json
import os
import statistics
import tempfile
import time

from lightllm import LLM, SamplingParams


def ceilings(device):
    if device == "cpu":
        return None, None
    try:
        import torch
    except ImportError:
        return None, None
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    times = []
    for _ in range(10):
        ev[0].record(); b.copy_(a); ev[1].record(); torch.cuda.synchronize()
        times.append(ev[0].elapsed_time(ev[1]) / 1e3)
    bw = 2 * n / statistics.median(times)
    x = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        x @ x
    times = []
    for _ in range(10):
        ev[0].record(); x @ x; ev[1].record(); torch.cuda.synchronize()
        times.append(ev[0].elapsed_time(ev[1]) / 1e3)
    rate = 2 * 8192 ** 3 / statistics.median(times)
    del a, b, x
    torch.cuda.empty_cache()
    return bw, rate


def make_model_dir(config_path):
    d = tempfile.mkdtemp(prefix="lightllm-bench-")
    with open(config_path) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return d, cfg


def params_count(cfg):
    h, i, l, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * hd
    return l * (h * (q + 2 * kv) + q * h + 3 * h * i), v * h


def timed_decode(llm, batch, context, steps, params=None):
    """Median engine step time of `batch` sequences decoding at `context` tokens (greedy, or
    `params`: a SamplingParams whose max_tokens is replaced)."""
    eng = llm._engine
    p = params or SamplingParams(temperature=0.0, ignore_eos=True)
    sp = dict(p.engine_dict(), max_tokens=steps + 4)
    base = 10_000_000 + batch * 100_000 + context
    for i in range(batch):
        eng.add_request(base + i, [(7 * i + 13 * j) % 1000 + 10 for j in range(context)], sp)
    while True:  # prefill every sequence
        updates = eng.step()
        if sum(1 for u in updates if u[2] is not None) == batch:
            break
    times, fwd = [], []
    for _ in range(steps):
        f0 = eng.stats()["forward_seconds"]
        t0 = time.perf_counter()
        eng.step()
        times.append(time.perf_counter() - t0)
        fwd.append(eng.stats()["forward_seconds"] - f0)
    while eng.has_unfinished():
        eng.step()
    return statistics.median(times), statistics.median(fwd)


def timed_prefill(llm, batch, length):
    eng = llm._engine
    sp = SamplingParams(temperature=0.0, max_tokens=1, ignore_eos=True).engine_dict()
    for i in range(batch):
        eng.add_request(20_000_000 + batch * 100_000 + i, [(11 * i + 5 * j) % 1000 + 10 for j in range(length)], sp)
    t0 = time.perf_counter()
    while eng.has_unfinished():
        eng.step()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batches", help="comma-separated decode batch sizes (default: the sweep; --quick: 1,8,64)")
    ap.add_argument("--steps", type=int, help="timed decode steps per batch (default 32; --quick: 8)")
    ap.add_argument("--context", type=int, default=1024, help="decode context in tokens (default 1024)")
    ap.add_argument("--no-prefill", action="store_true")
    args = ap.parse_args()
    d, cfg = make_model_dir(args.config)
    bw, rate = ceilings(args.device if args.device != "auto" else "cuda")
    batches = [1, 8, 64] if args.quick else [1, 2, 4, 8, 16, 32, 64, 128, 256]
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
    ctx = args.context
    llm = LLM(d, load_format="dummy", device=args.device, max_model_len=ctx + 64 if args.quick else max(ctx, 8192) + 64,
              max_num_seqs=max(batches), max_num_batched_tokens=8192, enable_prefix_caching=False,
              max_total_token_num=max(batches) * (ctx + 64) + 8192)
    st = llm.stats()
    weights, kv_tok = st["weight_bytes"], st["kv_bytes_per_token"]
    layers, embed = params_count(cfg)
    print(f"# {os.path.basename(os.path.dirname(os.path.abspath(args.config)))}: device {llm.device}, "
          f"weights {weights / 1e9:.2f} GB, KV {kv_tok} B/token")
    print(f"# ceilings: copy {bw / 1e9:.0f} GB/s, bf16 GEMM {rate / 1e12:.0f} TFLOP/s" if bw else "# ceilings: n/a (no torch)")
    print(f"{'batch':>6} {'ctx':>6} {'step ms':>9} {'fwd ms':>9} {'floor ms':>9} {'floor/fwd':>9}")
    steps = args.steps or (8 if args.quick else 32)
    for b in batches:
        step, fwd = timed_decode(llm, b, ctx, steps)
        floor = (weights + b * ctx * kv_tok) / bw if bw else float("nan")
        print(f"{b:>6} {ctx:>6} {step * 1e3:>9.2f} {fwd * 1e3:>9.2f} {floor * 1e3:>9.2f} {floor / fwd:>9.2f}")
    for b, n in [] if args.no_prefill else [(1, 1024)] if args.quick else [(1, 8192), (8, 1024)]:
        secs = timed_prefill(llm, b, n)
        hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        attn = 2 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * hd * n * n * b  # causal QK^T + PV
        flops = 2 * (layers * b * n + embed * b) + attn
        floor = flops / rate if rate else float("nan")
        print(f"prefill {b}x{n}: {b * n / secs:,.0f} tokens/s, {secs * 1e3:.1f} ms, floor {floor * 1e3:.1f} ms "
              f"({floor / secs:.2f} of GEMM rate)")


if __name__ == "__main__":
    main()
