"""Coverage and compile time of the grammar compiler over all MaskBench JSON Schemas.

    PYTHONPATH=. python benchmarks/grammar_coverage.py [--step 1] [--out results.json] [--show conflict]
        [--counter-threshold N]

For every schema (../shared/maskbench/data, read in place): does the front end accept it
(grammar_from_json_schema), does it compile to a DPDA (GrammarCompiler.compile, no vocabulary,
a fresh cache entry per schema), and if not, why (LR conflict / "grammar too large" / other).
Compile time is timed from Python around compile (front end included) on one thread; the
percentiles are over the schemas that compile.  --out writes one record per schema (status,
message, seconds) so two commits can be compared schema by schema.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)  # after PYTHONPATH and site-packages: PYTHONPATH=<tree> picks the build measured
from lightllm import _C  # noqa: E402

MASKBENCH = os.path.join(ROOT, "..", "shared", "maskbench", "data")


def classify(msg):
    if "conflict" in msg:
        return "conflict"
    if "too large" in msg:
        return "too_large"
    return "other"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", type=int, default=1, help="every step-th MaskBench file")
    ap.add_argument("--out", help="write per-schema records (JSON) here")
    ap.add_argument("--show", help="print the messages of this failure class (conflict / too_large / other)")
    ap.add_argument("--counter-threshold", type=int, default=0,
                    help="bounds from which repetitions are counted (_C.grammar_set_counter_threshold; 0: the default)")
    args = ap.parse_args()
    _C.grammar_set_counter_threshold(args.counter_threshold)
    files = sorted(os.listdir(MASKBENCH))[::args.step]
    counts = dict(schemas=0, front_end=0, compiled=0, conflict=0, too_large=0, other=0)
    times, records = [], {}
    for name in files:
        with open(os.path.join(MASKBENCH, name), encoding="utf-8") as f:
            schema = json.dumps(json.load(f)["schema"], ensure_ascii=False)
        counts["schemas"] += 1
        try:
            _C.grammar_from_json_schema(schema)
        except ValueError as e:
            records[name] = dict(status="front_end", msg=str(e)[:300])
            continue
        counts["front_end"] += 1
        gc = _C.GrammarCompiler(capacity=1)
        t0 = time.perf_counter()
        try:
            gc.compile("json_schema", schema)
            dt = time.perf_counter() - t0
            counts["compiled"] += 1
            times.append(dt)
            records[name] = dict(status="compiled", s=dt)
        except ValueError as e:
            dt = time.perf_counter() - t0
            kind = classify(str(e))
            counts[kind] += 1
            records[name] = dict(status=kind, msg=str(e)[:1000], s=dt)
            if args.show == kind:
                print(f"{name}: {str(e)[:400]}")
    n, fe = counts["schemas"], counts["front_end"]
    print(f"counter threshold {_C.grammar_set_counter_threshold(args.counter_threshold)}; schemas {n}; front end accepts {fe} ({100 * fe / n:.1f}%); compile {counts['compiled']} "
          f"({100 * counts['compiled'] / n:.1f}% of all, {100 * counts['compiled'] / max(fe, 1):.1f}% of accepted); "
          f"conflict {counts['conflict']}; too large {counts['too_large']}; other {counts['other']}")
    ms = [t * 1e3 for t in times]
    print(f"compile time over the {len(ms)} that compile: p50 {pct(ms, 50):.2f} ms  p90 {pct(ms, 90):.2f} ms  "
          f"p99 {pct(ms, 99):.2f} ms  max {max(ms) if ms else float('nan'):.1f} ms")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(counts=counts, records=records), f, indent=0)


if __name__ == "__main__":
    main()
