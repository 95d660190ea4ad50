"""lightllm vs Hugging Face transformers on the same shapes, same card, same process.

    python benchmarks/compare_hf.py --config ../shared/models/llama3.1-8b/config.json [--quick]

Both run random bf16 weights with the published config. transformers: generate() with the eager
dynamic cache, and with --static batch 1 also through a static cache with the forward compiled by
torch.compile (mode reduce-overhead: CUDA graphs) in a greedy loop of our own, logits cloned out of the
graph every step (generate()'s own static-cache + compile path fails on our GPU image: CUDA-graph
outputs overwritten); lightllm: engine steps (see bench_latency.py).
Printed as ms per decode step and the ratio transformers / lightllm (> 1: lightllm is faster)."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_latency import make_model_dir, timed_decode, timed_prefill  # noqa: E402
from lightllm import LLM  # noqa: E402


def hf_model(cfg):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    conf = AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"},
                                architectures=cfg.get("architectures"))
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(conf, dtype=torch.bfloat16)
    model.eval()
    return model


def hf_decode_ms(model, batch, ctx, steps):
    import torch
    ids = torch.randint(10, 1000, (batch, ctx), device="cuda")
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)

    def run(n):
        model.generate(ids, min_new_tokens=n, max_new_tokens=n, **kw)  # warm-up (and compile for this shape)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, min_new_tokens=n, max_new_tokens=n, **kw)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    with torch.inference_mode():
        prefill, total = run(1), run(steps)
    return (total - prefill) / (steps - 1) * 1e3


def make_static_cache(model, max_len):
    from transformers import StaticCache
    try:  # transformers 5: the cache allocates its tensors on first use
        return StaticCache(config=model.config, max_cache_len=max_len)
    except TypeError:  # 4.x signature
        import torch
        return StaticCache(config=model.config, max_batch_size=1, max_cache_len=max_len, device="cuda",
                           dtype=torch.bfloat16)


def hf_static_compiled_ms(model, ctx, steps):
    """Batch-1 greedy decode through a static cache and a torch.compile'd forward, ms per step."""
    import torch
    fwd = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    ids = torch.randint(10, 1000, (1, ctx), device="cuda")

    def run(n):  # one cache length for warm-up and timing: a new length would recompile inside the timed loop
        cache = make_static_cache(model, ctx + steps + 8)
        logits = model(input_ids=ids, past_key_values=cache, cache_position=torch.arange(ctx, device="cuda"),
                       use_cache=True).logits
        tok = logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(n):
            pos = torch.tensor([ctx + i], device="cuda")
            torch.compiler.cudagraph_mark_step_begin()
            logits = fwd(input_ids=tok, past_key_values=cache, cache_position=pos, position_ids=pos[None],
                         use_cache=True).logits
            tok = logits[:, -1:].argmax(-1).clone()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / n * 1e3

    with torch.inference_mode():
        run(4)  # compile and capture
        return run(steps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--static", action="store_true", help="batch 1 also with a static cache + torch.compile")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8,64; --quick 1,8)")
    args = ap.parse_args()
    d, cfg = make_model_dir(args.config)
    ctx, steps = 1024, (16 if args.quick else 64)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [1, 8] if args.quick else [1, 8, 64]
    llm = LLM(d, load_format="dummy", device="cuda", max_model_len=ctx + steps + 16, max_num_seqs=max(batches),
              max_num_batched_tokens=8192, enable_prefix_caching=False, max_total_token_num=max(batches) * (ctx + steps + 16))
    ours = {b: timed_decode(llm, b, ctx, steps)[0] * 1e3 for b in batches}
    ours_prefill = timed_prefill(llm, 1, ctx) * 1e3
    del llm
    model = hf_model(cfg)
    rows = []
    for b in batches:
        rows.append((b, hf_decode_ms(model, b, ctx, steps), "eager dynamic cache"))
        if b == 1 and args.static:
            try:
                rows.append((b, hf_static_compiled_ms(model, ctx, steps), "static cache + torch.compile"))
            except Exception as e:  # report and go on with the eager figures
                print(f"# transformers static cache + torch.compile failed ({type(e).__name__}: {e})")
    print(f"# {cfg['architectures'][0]} shapes from {args.config}; context {ctx}, {steps} decode steps")
    print(f"{'batch':>6} {'lightllm ms':>12} {'transformers ms':>16} {'ratio':>7}  transformers mode")
    for b, ms, mode in rows:
        print(f"{b:>6} {ours[b]:>12.2f} {ms:>16.2f} {ms / ours[b]:>7.2f}  {mode}")
    print(f"prefill 1x{ctx}: lightllm {ours_prefill:.1f} ms (engine step, incl. sampling)")
    print(json.dumps({"ours_ms": ours, "hf_ms": {f"{b} {mode}": ms for b, ms, mode in rows}}))


if __name__ == "__main__":
    main()
