"""Weight load time: a real safetensors checkpoint with a published model's shapes (random bf16
values, sharded at ~5 GB as Hugging Face writes them) loaded by lightllm onto the GPU, beside the
physical floor and a peer measured in the same run on the same card.

    python benchmarks/bench_load.py --config ../shared/models/llama3.1-8b/config.json [--dir DIR] [--no-peer]

The checkpoint is written once (to --dir, default a temporary folder) and read back through the page
cache, so the figure is the loader's pipeline (mmap -> pinned staging -> device, overlapped), not
the disk.  Floor: the checkpoint's bytes over the pinned host-to-device copy rate (torch, 1 GiB).
Peer: transformers' `from_pretrained(dir, dtype=bfloat16, device_map="cuda")` on the same files.
lightllm's figure is `LLM.stats()["load_seconds"]` (model_load: open, parse, upload every tensor).
"""
import argparse
import json
import os
import struct
import tempfile
import time

import numpy as np

from lightllm import LLM


def tensor_shapes(cfg):
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or h // heads
    kv = cfg.get("num_key_value_heads", heads)
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not cfg.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (v, h)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (heads * hd, h), p + "self_attn.k_proj.weight": (kv * hd, h),
            p + "self_attn.v_proj.weight": (kv * hd, h), p + "self_attn.o_proj.weight": (h, heads * hd),
            p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h), p + "mlp.down_proj.weight": (h, i),
        })
        if cfg.get("model_type") == "qwen3":
            shapes.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    return shapes


def write_checkpoint(cfg, d, shard_bytes=5 << 30):
    """Random bf16 tensors (a 64 MiB random block tiled), safetensors shards + index."""
    rng = np.random.default_rng(0)
    block = (rng.standard_normal(32 << 20, dtype=np.float32) * 0.02).view(np.uint32) >> 16
    block = block.astype(np.uint16).tobytes()
    shards, cur, size = [], [], 0
    for name, shape in tensor_shapes(cfg).items():
        n = int(np.prod(shape)) * 2
        if cur and size + n > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape, n))
        size += n
    shards.append(cur)
    weight_map, total = {}, 0
    for si, shard in enumerate(shards):
        fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {}, 0
        for name, shape, n in shard:
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        hb = json.dumps(header).encode()
        hb += b" " * (-len(hb) % 8)
        with open(os.path.join(d, fname), "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb)
            for name, shape, n in shard:
                left = n
                while left > 0:
                    k = min(left, len(block))
                    f.write(block[:k])
                    left -= k
        total += off
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(dict(cfg, torch_dtype="bfloat16"), f)
    return total


def h2d_rate():
    import torch
    a = torch.empty(1 << 30, dtype=torch.uint8).pin_memory()
    b = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    for _ in range(2):
        b.copy_(a, non_blocking=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        b.copy_(a, non_blocking=True)
    torch.cuda.synchronize()
    rate = 5 * (1 << 30) / (time.perf_counter() - t0)
    del a, b
    torch.cuda.empty_cache()
    return rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--dir", help="checkpoint folder (written if it has no index)")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu (a check of the script: no floor, no peer)")
    args = ap.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    d = args.dir or tempfile.mkdtemp(prefix="lightllm-load-")
    os.makedirs(d, exist_ok=True)
    t0 = time.perf_counter()
    total = write_checkpoint(cfg, d) if not os.path.exists(os.path.join(d, "model.safetensors.index.json")) else None
    if total is not None:
        print(f"# wrote {total / 1e9:.2f} GB to {d} in {time.perf_counter() - t0:.1f} s")
    # warm the page cache (the figure is the loader, not the disk)
    for fn in sorted(os.listdir(d)):
        with open(os.path.join(d, fn), "rb") as f:
            while f.read(64 << 20):
                pass
    rate = h2d_rate() if args.device == "cuda" else float("nan")
    llm = LLM(d, load_format="safetensors", device=args.device, max_model_len=min(1024, cfg.get("max_position_embeddings", 1024)), max_num_seqs=4,
              max_total_token_num=8192)
    st = llm.stats()
    wb, secs = st["weight_bytes"], st["load_seconds"]
    out = llm.generate([[1, 2, 3]], __import__("lightllm").SamplingParams(max_tokens=2, temperature=0.0))
    assert out[0].outputs[0].token_ids, "the loaded model did not generate"
    del llm
    floor = wb / rate
    print(f"pinned host->device: {rate / 1e9:.1f} GB/s")
    print(f"lightllm   load {secs:6.2f} s  {wb / 1e9:.2f} GB  {wb / secs / 1e9:5.1f} GB/s  floor {floor:.2f} s ({floor / secs:.2f})")
    if not args.no_peer and args.device == "cuda":
        import torch
        from transformers import AutoModelForCausalLM
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda")
        torch.cuda.synchronize()
        hf = time.perf_counter() - t0
        del m
        print(f"transformers from_pretrained {hf:6.2f} s  {wb / hf / 1e9:5.1f} GB/s  (lightllm {hf / secs:.2f}x faster)")


if __name__ == "__main__":
    main()
