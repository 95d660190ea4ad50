"""Grammar-constrained decoding on one core: per-token mask time (p50 / p99 / max) and compile
time (p50) over MaskBench JSON Schemas (../shared/maskbench/data) and their first valid instance,
tokenized with the real Qwen3 (151k) and DeepSeek-V3 (128k) vocabularies, for lightllm's DPDA
(csrc/grammar) and, side by side on the same inputs, xgrammar and llguidance when they import.

    python benchmarks/bench_grammar.py [--step 10] [--vocabs qwen3,deepseek_v3] [--peers xgrammar,llguidance]

Per token: the mask for the current state is computed (timed), the instance's next token must be
in it, then every engine advances by that token.  lightllm is timed in C around the mask call
(GrammarMatcher.bench) and also from Python around fill_mask (the peers are timed from Python
around their fill calls).  Instances are written the way lightllm's JSON grammar expects them
(declared property order, compact separators); the peers are configured the same way (compact,
no flexible whitespace); a token a peer rejects ends that peer's run of the instance (counted).
lightllm's mask caches are lazy and persist per vocabulary across grammars (regions): the cold
pass is the first visit of every schema, the warm pass repeats the instances.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)  # after PYTHONPATH and site-packages: PYTHONPATH=<tree> picks the build measured
sys.path.insert(0, os.path.join(ROOT, "tests"))
from lightllm import _C  # noqa: E402
from lightllm.tokenizer import Tokenizer  # noqa: E402
from test_grammar_frontends import dump, reorder  # noqa: E402

MASKBENCH = os.path.join(ROOT, "..", "shared", "maskbench", "data")
TOKENIZERS = os.path.join(ROOT, "..", "shared", "tokenizers")


def pct(xs, q):
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")


def summary(name, mask_ns, compile_s, compiled, tried, extra=""):
    m = sorted(mask_ns)
    c = sorted(compile_s)
    return (f"{name:<22} schemas {compiled:>4}/{tried:<4} masks {len(m):>6}  mask p50 {pct(m, .5) / 1e3:8.1f} us  "
            f"p99 {pct(m, .99) / 1e3:9.1f} us  max {(m[-1] if m else float('nan')) / 1e3:9.0f} us  "
            f"compile p50 {pct(c, .5) * 1e3:8.2f} ms{extra}")


class Peers:
    """xgrammar / llguidance on the same tokenizer.json (through transformers' fast tokenizer)."""

    def __init__(self, names, tok_dir, vocab_size, eos, eos_token):
        self.engines = {}
        self.errors = {}
        hf = None
        try:
            import transformers
            hf = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"),
                                                      eos_token=eos_token)
        except Exception as e:  # noqa: BLE001
            self.errors["transformers"] = repr(e)
        if hf is not None and "llguidance" in names:
            try:
                import llguidance
                import llguidance.hf
                import llguidance.numpy
                llt = llguidance.hf.from_tokenizer(hf, n_vocab=vocab_size)
                self.engines["llguidance"] = ("llguidance", llguidance, llt)
            except Exception as e:  # noqa: BLE001
                self.errors["llguidance"] = repr(e)
        if hf is not None and "xgrammar" in names:
            try:
                import xgrammar as xgr
                info = xgr.TokenizerInfo.from_huggingface(hf, vocab_size=vocab_size, stop_token_ids=[eos])
                self.engines["xgrammar"] = ("xgrammar", xgr, xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False))
            except Exception as e:  # noqa: BLE001
                self.errors["xgrammar"] = repr(e)

    def compile(self, name, schema):
        kind, mod, obj = self.engines[name]
        if kind == "llguidance":
            g = mod.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
            t = time.perf_counter()
            m = mod.LLMatcher(obj, g)
            dt = time.perf_counter() - t
            if m.get_error():
                raise ValueError(m.get_error())
            return m, dt
        t = time.perf_counter()
        cg = obj.compile_json_schema(schema, any_whitespace=False, separators=(",", ":"))
        return cg, time.perf_counter() - t

    def run(self, name, compiled, ids):
        """ns per mask; stops at the first token the engine rejects."""
        kind, mod, obj = self.engines[name]
        out = []
        if kind == "llguidance":
            m = compiled
            bm = mod.numpy.allocate_token_bitmask(1, obj.vocab_size)
            for tid in ids:
                t = time.perf_counter_ns()
                mod.numpy.fill_next_token_bitmask(m, bm, 0)
                out.append(time.perf_counter_ns() - t)
                if not (bm[0, tid >> 5] >> (tid & 31)) & 1 or not m.consume_token(tid):
                    return out, False
            return out, True
        m = mod.GrammarMatcher(compiled)
        bm = mod.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)
        for tid in ids:
            t = time.perf_counter_ns()
            m.fill_next_token_bitmask(bm)
            out.append(time.perf_counter_ns() - t)
            if not m.accept_token(tid):
                return out, False
        return out, True


def bench_vocab(vname, args, cases):
    tok_dir = os.path.join(TOKENIZERS, vname)
    tok = Tokenizer.from_dir(tok_dir)
    eos = tok.eos_token_id
    vocab = _C.DetokVocab(tok.token_bytes(), sorted(tok.special_ids))
    gc = _C.GrammarCompiler(vocab, [eos])
    peers = Peers(args.peers.split(",") if args.peers else [], tok_dir, vocab.vocab_size, eos, tok.eos_token)
    print(f"\n== {vname}: vocab {vocab.vocab_size}, trie nodes built once; eos {eos}; peers: "
          f"{', '.join(peers.engines) or 'none'}" + (f"; unavailable: {peers.errors}" if peers.errors else ""))
    res = {k: dict(mask=[], compile=[], ok=0, tried=0, rejected=0) for k in ["lightllm", "lightllm_py", *peers.engines]}
    warm = []
    work = []
    slow = []   # (ns, schema file, text before the mask) of first visits, for --slowest
    for name, case in cases:
        schema = json.dumps(case["schema"], ensure_ascii=False)
        valid = [t for t in case["tests"] if t["valid"]]
        text = dump(reorder(valid[0]["data"], case["schema"], case["schema"])) if valid else None
        if text is None:
            continue
        ids = tok.encode(text.decode("utf-8"), add_special_tokens=False)
        r = res["lightllm"]
        r["tried"] += 1
        try:
            g = gc.compile("json_schema", schema)
        except ValueError:
            g = None
        if g is not None:
            r["ok"] += 1
            r["compile"].append(g.compile_us / 1e6)
            ns, done, miss = g.matcher().bench(ids + [eos])
            r["mask"] += ns
            if args.slowest:
                for k, t in enumerate(ns):
                    if miss[k]:
                        slow.append((t, name, tok.decode(ids[:k])[-40:] if k else ""))
            if done < len(ids) + 1:
                r["rejected"] += 1
            # the same from Python, through fill_mask (comparable with the peers' Python calls)
            m = g.matcher()
            buf = np.zeros(gc.mask_words, dtype=np.uint32)
            rp = res["lightllm_py"]
            rp["tried"] += 1
            rp["ok"] += 1
            for tid in ids + [eos]:
                t = time.perf_counter_ns()
                m.fill_mask(buf)
                rp["mask"].append(time.perf_counter_ns() - t)
                if not m.advance_token(tid):
                    break
            work.append((g, ids))
        for pname in peers.engines:
            rr = res[pname]
            rr["tried"] += 1
            try:
                comp, dt = peers.compile(pname, schema)
            except Exception:  # noqa: BLE001
                continue
            rr["ok"] += 1
            rr["compile"].append(dt)
            ns, ok = peers.run(pname, comp, ids + [eos])
            rr["mask"] += ns
            rr["rejected"] += not ok
    for g, ids in work:
        ns, _, _ = g.matcher().bench(ids + [eos])
        warm += ns
    for k, r in res.items():
        label = {"lightllm": "lightllm (C timer)", "lightllm_py": "lightllm (Python call)"}.get(k, k)
        extra = f"  instance runs cut by a rejected token: {r['rejected']}" if r["rejected"] else ""
        print(summary(label, r["mask"], r["compile"] if k != "lightllm_py" else res["lightllm"]["compile"], r["ok"],
                      r["tried"], extra))
    if args.slowest:
        slow.sort(reverse=True)
        tot = sum(t for t, _, _ in slow)
        over = ", ".join(f"{sum(t > lim * 1e3 for t, _, _ in slow)} > {lim} us" for lim in (50, 200, 1000))
        print(f"first visits: {len(slow)}, total {tot / 1e9:.2f} s ({over}); the {args.slowest} slowest:")
        for t, name, ctx in slow[:args.slowest]:
            print(f"  {t / 1e3:9.0f} us  {name:<40} ...{ctx!r}")
    w = sorted(warm)
    print(f"{'lightllm warm pass':<22} masks {len(w):>6}  mask p50 {pct(w, .5) / 1e3:8.1f} us  p99 {pct(w, .99) / 1e3:9.1f} us  "
          f"max {w[-1] / 1e3 if w else float('nan'):9.0f} us   (the same instances again: caches filled)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", type=int, default=10, help="every step-th MaskBench file")
    ap.add_argument("--vocabs", default="qwen3,deepseek_v3")
    ap.add_argument("--peers", default="xgrammar,llguidance")
    ap.add_argument("--slowest", type=int, default=0, help="print the N slowest first-visit masks (schema, text before)")
    ap.add_argument("--only", help="a file of MaskBench names (one a line, or a grammar_coverage.py --out JSON: its "
                                   "compiled schemas) to run instead of every step-th one")
    ap.add_argument("--counter-threshold", type=int, default=0,
                    help="bounds from which repetitions are counted (_C.grammar_set_counter_threshold; 0: the default)")
    args = ap.parse_args()
    _C.grammar_set_counter_threshold(args.counter_threshold)
    if not os.path.isdir(MASKBENCH):
        sys.exit(f"MaskBench data not found at {MASKBENCH}")
    files = sorted(os.listdir(MASKBENCH))[::args.step]
    if args.only:
        with open(args.only, encoding="utf-8") as f:
            text = f.read()
        names = ([n for n, r in json.loads(text)["records"].items() if r["status"] == "compiled"]
                 if text.lstrip().startswith("{") else text.split())
        files = sorted(set(names))
    cases = []
    for name in files:
        with open(os.path.join(MASKBENCH, name), encoding="utf-8") as f:
            cases.append((name, json.load(f)))
    print(f"bench_grammar: {len(cases)} MaskBench schemas (every {args.step}th), one core, "
          f"{os.cpu_count()} CPUs visible, counter threshold {_C.grammar_set_counter_threshold(args.counter_threshold)}")
    for v in args.vocabs.split(","):
        bench_vocab(v, args, cases)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
