"""Per-kernel time of one decode step, with Nsight Compute on the GPU machine:

    LIGHTLLM_CUDA_GRAPHS=0 ncu --clock-control none --metrics gpu__time_duration.sum --csv \\
        --launch-skip 3000 --launch-count 600 python benchmarks/profile_decode.py --config CONFIG \\
        --batch 1 > ncu.csv
    python benchmarks/profile_decode.py --summarize ncu.csv

The first form runs a batch of sequences through prefill and 12 decode steps on dummy weights
(so the skipped launches cover prefill and the first decode steps, the counted ones whole decode
steps); the second groups the profiled kernels by name: count, total and share of the time."""
import argparse
import csv
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def summarize(path):
    rows = [r for r in csv.DictReader(line for line in open(path) if line.startswith('"'))
            if r.get("Metric Name") == "gpu__time_duration.sum"]
    total = collections.Counter()
    count = collections.Counter()
    for r in rows:
        name = r["Kernel Name"].replace("(anonymous namespace)::", "").removeprefix("void ").split("(")[0].split("<")[0]
        unit = r.get("Metric Unit", "nsecond")
        v = float(r["Metric Value"].replace(",", "")) * {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
        total[name] += v
        count[name] += 1
    all_us = sum(total.values())
    print(f"{len(rows)} kernels, {all_us:.1f} us in all")
    print(f"{'kernel':<60} {'count':>6} {'total us':>10} {'share':>7}")
    for name, us in total.most_common():
        print(f"{name[:60]:<60} {count[name]:>6} {us:>10.1f} {100 * us / all_us:>6.1f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--summarize")
    args = ap.parse_args()
    if args.summarize:
        return summarize(args.summarize)
    from bench_latency import make_model_dir, timed_decode
    from lightllm import LLM
    d, _ = make_model_dir(args.config)
    llm = LLM(d, load_format="dummy", device="cuda", max_model_len=args.context + 64, max_num_seqs=max(args.batch, 1),
              max_num_batched_tokens=8192, enable_prefix_caching=False,
              max_total_token_num=args.batch * (args.context + 64) + 64)
    timed_decode(llm, args.batch, args.context, 12)


if __name__ == "__main__":
    main()
