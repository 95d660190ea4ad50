"""Decode step time with structured output vs without, on dummy weights with a published shape
and its real tokenizer (the mask is computed on the host for every constrained row while the
step's forward runs, then applied inside the sampling kernel):

    python benchmarks/bench_constrained.py --model-dir DIR [--device cuda] [--batches 1,8,64,256]

DIR holds a config.json (e.g. ../shared/models/qwen3-8b) and its tokenizer.json. Every row of the
constrained run follows a JSON Schema (an array of records: strings, integers, enums, nested
objects) with ignore_eos, so the grammar keeps constraining for every timed step. Prints the
median step time of each and the overhead."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_latency import timed_decode  # noqa: E402
from lightllm import LLM, SamplingParams  # noqa: E402

SCHEMA = {"type": "array", "items": {"type": "object", "properties": {
    "id": {"type": "integer", "minimum": 0}, "name": {"type": "string", "maxLength": 40},
    "kind": {"enum": ["user", "admin", "guest"]}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
    "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "[0-9]{5}"}},
                "required": ["city", "zip"]}}, "required": ["id", "name", "kind", "address"]}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    llm = LLM(args.model_dir, load_format="dummy", device=args.device, max_model_len=args.context + args.steps + 64,
              max_num_seqs=max(batches), max_num_batched_tokens=8192, enable_prefix_caching=False,
              max_total_token_num=max(batches) * (args.context + args.steps + 64) + 8192)
    plain = SamplingParams(temperature=0.0, ignore_eos=True)
    guided = SamplingParams(temperature=0.0, ignore_eos=True, guided_json=SCHEMA)
    print(f"# {os.path.basename(os.path.abspath(args.model_dir))}: device {llm.device}, vocab {llm.stats()['vocab_size']}, "
          f"context {args.context}, median of {args.steps} steps")
    print(f"{'batch':>6} {'plain ms':>9} {'json ms':>9} {'overhead':>9}")
    for b in batches:
        t_plain, _ = timed_decode(llm, b, args.context, args.steps)
        t_json, _ = timed_decode(llm, b, args.context, args.steps, guided)
        print(f"{b:>6} {t_plain * 1e3:>9.3f} {t_json * 1e3:>9.3f} {100 * (t_json / t_plain - 1):>8.1f}%")
    assert llm.stats()["num_grammar_rejects"] == 0


if __name__ == "__main__":
    main()
