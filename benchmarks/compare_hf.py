"""lightllm vs Hugging Face transformers on the same shapes, same card, same process.

    python benchmarks/compare_hf.py --config ../shared/models/llama3.1-8b/config.json [--quick]

Both run random bf16 weights with the published config. transformers: generate() with the eager
dynamic cache (its torch.compile + static-cache path is known to fail on our GPU image: CUDA-graph
outputs overwritten; --static tries it anyway); lightllm: engine steps (see bench_latency.py).
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


def hf_decode_ms(model, batch, ctx, steps, static_compile):
    import torch
    ids = torch.randint(10, 1000, (batch, ctx), device="cuda")
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    if static_compile:
        kw.update(cache_implementation="static")

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--static", action="store_true", help="batch 1 with static cache + torch.compile")
    args = ap.parse_args()
    d, cfg = make_model_dir(args.config)
    ctx, steps = 1024, (16 if args.quick else 64)
    batches = [1, 8] if args.quick else [1, 8, 64]
    llm = LLM(d, load_format="dummy", device="cuda", max_model_len=ctx + steps + 16, max_num_seqs=max(batches),
              max_num_batched_tokens=8192, enable_prefix_caching=False, max_total_token_num=max(batches) * (ctx + steps + 16))
    ours = {b: timed_decode(llm, b, ctx, steps)[0] * 1e3 for b in batches}
    ours_prefill = timed_prefill(llm, 1, ctx) * 1e3
    del llm
    model = hf_model(cfg)
    rows = []
    for b in batches:
        mode = "eager dynamic cache"
        if b == 1 and args.static:
            try:
                ms, mode = hf_decode_ms(model, b, ctx, steps, static_compile=True), "static cache + compile"
            except Exception as e:  # known to fail on the GPU image
                print(f"# transformers static cache + torch.compile failed ({type(e).__name__}: {e})")
                ms = hf_decode_ms(model, b, ctx, steps, static_compile=False)
        else:
            ms = hf_decode_ms(model, b, ctx, steps, static_compile=False)
        rows.append((b, ms, mode))
    print(f"# {cfg['architectures'][0]} shapes from {args.config}; context {ctx}, {steps} decode steps")
    print(f"{'batch':>6} {'lightllm ms':>12} {'transformers ms':>16} {'ratio':>7}  transformers mode")
    for b, ms, mode in rows:
        print(f"{b:>6} {ours[b]:>12.2f} {ms:>16.2f} {ms / ours[b]:>7.2f}  {mode}")
    print(f"prefill 1x{ctx}: lightllm {ours_prefill:.1f} ms (engine step, incl. sampling)")
    print(json.dumps({"ours_ms": ours, "hf_ms": {b: ms for b, ms, _ in rows}}))


if __name__ == "__main__":
    main()
